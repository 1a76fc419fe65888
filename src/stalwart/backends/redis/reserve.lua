-- The store-wide half of enqueue, in the slot of "{prefix}": claims each message's id and
-- idempotency key, records the queue, and creates the job. Runs before the per-queue
-- enqueue.lua: both inside one store.lua call (enqueue's one round trip), or as two calls,
-- as enqueue made them before store.lua. A retry after a lost reply finds its own
-- reservation.
-- ARGV[1] is the base "{prefix}", ARGV[2] now, ARGV[3..5] the named job (id, name,
-- created_at; '' when none), ARGV[6] the count n of ids an earlier call of the same batch
-- reserved, ARGV[7..6+n] those ids, then 4 fields per message: id, queue, idempotency key
-- ('' or '=' .. key), job ('' or '=' .. job id).
-- Returns one entry per message: 1 when enqueue.lua is to store it as sent (the common case,
-- kept small so the reply is cheap to read), else {resolved id, flag, queue}. Flag 0: nothing
-- is stored; 1: this message's content is stored under the resolved id, in that queue; 2: the
-- same without its idempotency key, which names another message.
--
-- The first reservation of an id or key is authoritative. A later message whose id is
-- reserved, or whose key names a reserved id E, resolves to E. While E's message is stored
-- (or reserved by this same batch) nothing more is stored. While it is not, its producer made
-- the two steps as two calls and may be between them, or may have died there (or given up
-- after its second call kept failing): this script cannot tell which, and need not. The later
-- message is stored under E, in the queue E was reserved for; enqueue.lua stores an id only
-- once, so whichever of the two stores lands first is E's message and the other stores
-- nothing. One message per key, and never one lost to a producer that died.
--
-- Whether a message is stored is read from its hash in the queue's slot, and whether it was
-- deleted (a tombstone the store-wide indexes have not yet forgotten) from the queue's
-- 'purged' list: cross-slot reads that a single server allows. On Redis Cluster the client
-- would read them in the queue's slot first, then have this script check that the
-- reservation is unchanged: one more round trip, and only when an id or key is taken.
local base, now = ARGV[1], ARGV[2]
local named, named_name, named_created = ARGV[3], ARGV[4], ARGV[5]
local idx, ikeys = base .. ':idx', base .. ':ikeys'
local qprefix = string.sub(base, 1, -2) .. ':'
local pending = {}
local first = 7 + tonumber(ARGV[6])
for i = 7, first - 1 do pending[ARGV[i]] = true end

-- True when message `id` of queue `q` was deleted but the indexes still name it.
local function purged(q, id)
  local list = qprefix .. q .. '}:purged'
  if redis.call('LLEN', list) == 0 then return false end
  local mark = id .. '\n'
  for _, entry in ipairs(redis.call('LRANGE', list, 0, -1)) do
    if string.sub(entry, 1, #mark) == mark then return true end
  end
  return false
end

-- Where id `id` stands: (queue, true) when its message is stored or reserved by this batch,
-- (queue, false) when reserved and not stored, nil when free.
local function lookup(id)
  if pending[id] then return '', true end
  local q = redis.call('HGET', idx, id)
  if not q then return nil end
  if redis.call('EXISTS', qprefix .. q .. '}:m:' .. id) == 1 then return q, true end
  if purged(q, id) then return nil end
  return q, false
end

local out = {}
for i = first, #ARGV, 4 do
  local id, queue, ikey, job = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local target, q, stored = id, lookup(id)
  local holder, hq, hstored
  if ikey ~= '' then
    ikey = string.sub(ikey, 2)
    holder = redis.call('HGET', ikeys, ikey)
    if holder and holder ~= id then hq, hstored = lookup(holder) end
  end
  if hstored and not stored then
    -- The key's message is stored and this id's is not: the key answers, as it would had
    -- this id's reservation not been made yet.
    target, q, stored = holder, hq, true
  elseif not q and hq then
    target, q, stored = holder, hq, hstored
  end
  if stored then
    out[#out + 1] = {target, 0}
  else
    if not q then
      -- A fresh reservation. The key's former holder, if any, was deleted (its id left the
      -- index, or its tombstone awaits that), so the key is free.
      q = queue
      redis.call('HSET', idx, id, q)
      redis.call('SADD', base .. ':queues', q)
    end
    local flag = 1
    if ikey ~= '' and not hq then
      redis.call('HSET', ikeys, ikey, target)
    elseif ikey ~= '' and holder ~= target then
      -- This id was reserved first, and the key by another reserved id: the message is
      -- stored under its id without the key, so the key still names one message.
      flag = 2
    end
    if job ~= '' then
      job = string.sub(job, 2)
      if redis.call('HEXISTS', base .. ':jobs', job) == 0 then
        local name, created = job, now
        if job == named then
          name = named_name
          if named_created ~= '' then created = named_created end
        end
        redis.call('HSET', base .. ':jobs', job, cjson.encode({name = name, created_at = created}))
        redis.call('ZADD', base .. ':jobs_t', created, job)
      end
      redis.call('SADD', base .. ':jq:' .. job, q)
    end
    pending[target] = true
    if flag == 1 and target == id and q == queue then
      out[#out + 1] = 1
    else
      out[#out + 1] = {target, flag, q}
    end
  end
end
return out
