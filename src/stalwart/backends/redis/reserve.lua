-- The store-wide half of enqueue, in the slot of "{prefix}": claims each message's id and
-- idempotency key, records the queue, and creates the job. Runs before the per-queue
-- enqueue.lua, so a retry after a lost reply finds its own reservation and completes it.
-- ARGV[1] is the base "{prefix}", ARGV[2] now, ARGV[3..5] the named job (id, name,
-- created_at; '' when none), ARGV[6] the count n of ids an earlier call of the same batch
-- reserved, ARGV[7..6+n] those ids, then 4 fields per message: id, queue, idempotency key
-- ('' or '=' .. key), job ('' or '=' .. job id).
-- Returns a flat list: resolved id, store flag (1: the message is to be stored in its queue).
--
-- A reservation alone never answers for a message. A process that died between the two
-- steps (or a second step that kept failing until its caller gave up) leaves an id and key
-- reserved but never stored; if that reservation answered a later enqueue, the later
-- message would not be stored and the caller would get an id that never runs. So an id or
-- key counts as taken only while its message is stored, or is about to be stored by this
-- same batch; otherwise the reservation passes to the message at hand, which gets stored.
-- The price, under a true race of two producers with one key (one between its two steps
-- while the other reserves), is that both messages are stored: a duplicate, never a loss.
-- The same holds for one id sent to two queues at once: both copies are stored and the
-- index follows the later one.
--
-- Whether a message is stored is read from its hash in the queue's slot: a cross-slot read
-- that a single server allows. Redis Cluster would need that read done by the client in the
-- queue's slot, then a compare-and-set here ("rebind the key only while it still names that
-- id"): one more round trip, and only when a key or id is already taken.
local base, now = ARGV[1], ARGV[2]
local named, named_name, named_created = ARGV[3], ARGV[4], ARGV[5]
local idx, ikeys = base .. ':idx', base .. ':ikeys'
local qprefix = string.sub(base, 1, -2) .. ':'
local pending = {}
local first = 7 + tonumber(ARGV[6])
for i = 7, first - 1 do pending[ARGV[i]] = true end

-- True when message `id` is stored, or reserved by this batch (its second step stores it).
local function live(id)
  if pending[id] then return true end
  local q = redis.call('HGET', idx, id)
  return q and redis.call('EXISTS', qprefix .. q .. '}:m:' .. id) == 1
end

local out = {}
for i = first, #ARGV, 4 do
  local id, queue, ikey, job = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local holder = ikey ~= '' and redis.call('HGET', ikeys, string.sub(ikey, 2))
  if live(id) then
    out[#out + 1] = id
    out[#out + 1] = 0
  elseif holder and holder ~= id and live(holder) then
    out[#out + 1] = holder
    out[#out + 1] = 0
  else
    -- A stale reservation of `holder` stays in idx: that message may yet be stored by a
    -- producer between its steps, and must stay findable if it is.
    redis.call('HSET', idx, id, queue)
    if ikey ~= '' then redis.call('HSET', ikeys, string.sub(ikey, 2), id) end
    redis.call('SADD', base .. ':queues', queue)
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
      redis.call('SADD', base .. ':jq:' .. job, queue)
    end
    pending[id] = true
    out[#out + 1] = id
    out[#out + 1] = 1
  end
end
return out
