-- Shared by every per-queue script: it is prepended to each one when the scripts load.
-- ARGV[1] is the queue's key base "{prefix:queue}" (one hash tag, so one cluster slot);
-- ARGV[2] is the client's clock as text. Times stay text end to end, so no digit is lost
-- on their way through Lua's number formatting.
local base = ARGV[1]
local now = ARGV[2]
local nnow = tonumber(now)

local function key(name) return base .. ':' .. name end
local function mkey(id) return base .. ':m:' .. id end
local function akey(id) return base .. ':a:' .. id end

local FINAL = {succeeded = true, dead = true, cancelled = true}

-- Score in the ready set: priority 9 first; equal scores sort by member, the id: FIFO.
local function ready_score(priority) return 9 - tonumber(priority) end

-- Up to 4 wake tokens: 'r' means work is ready, 's' means the earliest eta changed.
local function wake(kind, n)
  if n <= 0 then return end
  for _ = 1, math.min(n, 4) do redis.call('LPUSH', key('wake'), kind) end
  redis.call('LTRIM', key('wake'), 0, 15)
end

-- Index and counter writes. Immediate, unless the script gathered them with begin_batch():
-- then flush_batch() sends one ZREM, ZADD and HINCRBY per key and field instead of one per
-- message (claim and settle move many messages per call). Within a batch a key's removals
-- go before its additions, so a batch may not add a member it then removes again.
local batch = nil

local function begin_batch() batch = {rem = {}, add = {}, incr = {}} end

local function zrem(k, id)
  if not batch then return redis.call('ZREM', k, id) end
  local t = batch.rem[k]
  if not t then t = {}; batch.rem[k] = t end
  t[#t + 1] = id
end

local function zadd(k, score, id)
  if not batch then return redis.call('ZADD', k, score, id) end
  local t = batch.add[k]
  if not t then t = {}; batch.add[k] = t end
  t[#t + 1] = score
  t[#t + 1] = id
end

local function hincr(k, field, n)
  if not batch then return redis.call('HINCRBY', k, field, n) end
  local t = batch.incr[k]
  if not t then t = {}; batch.incr[k] = t end
  t[field] = (t[field] or 0) + n
end

local function flush_batch()
  if not batch then return end
  local b = batch
  batch = nil
  for k, ids in pairs(b.rem) do
    for i = 1, #ids, 1000 do redis.call('ZREM', k, unpack(ids, i, math.min(i + 999, #ids))) end
  end
  for k, args in pairs(b.add) do
    for i = 1, #args, 1000 do redis.call('ZADD', k, unpack(args, i, math.min(i + 999, #args))) end
  end
  for k, fields in pairs(b.incr) do
    for field, n in pairs(fields) do
      if n ~= 0 then redis.call('HINCRBY', k, field, n) end
    end
  end
end

-- The one state transition: message `id` (hash `h`, member of job `job` or false) goes from
-- `from` (false when new) to `to`. Keeps the per-state index, the claim indexes (ready by
-- priority, scheduled by eta, running by lease expiry) and the queue and job counters in
-- step. `score` is the eta for scheduled, the lease expiry for running.
local function move(id, h, job, from, to, score)
  local stats = key('stats')
  local jk = job and key('j:' .. job)
  if from then
    zrem(key('s:' .. from), id)
    if from == 'queued' then
      zrem(key('ready'), id)  -- a queued message is never in the eta index
    elseif from == 'scheduled' then
      zrem(key('ready'), id)  -- its eta passed and a claim moved it to ready
      zrem(key('sched'), id)
    elseif from == 'running' then
      zrem(key('running'), id)
      redis.call('HDEL', h, 'expires')
      if job then redis.call('SREM', key('jp:' .. job), id) end
    end
    if from == 'dead' then zrem(key('dead_t'), id) end
    hincr(stats, from, -1)
    if jk then hincr(jk, from, -1) end
  else
    hincr(stats, 'accepted', 1)
    if jk then hincr(jk, 'accepted', 1) end
  end
  zadd(key('s:' .. to), 0, id)
  hincr(stats, to, 1)
  if jk then hincr(jk, to, 1) end
  if to == 'running' then
    redis.call('HSET', h, 'state', to, 'updated_at', now, 'expires', score)
  else
    redis.call('HSET', h, 'state', to, 'updated_at', now)
  end
  if to == 'dead' then
    zadd(key('dead_t'), now, id)
  elseif FINAL[to] then
    zadd(key('done_t'), now, id)
  end
  if to == 'queued' then
    zadd(key('ready'), ready_score(redis.call('HGET', h, 'priority')), id)
  elseif to == 'scheduled' then
    zadd(key('sched'), score, id)
  elseif to == 'running' then
    zadd(key('running'), score, id)
    if job and redis.call('HEXISTS', h, 'progress') == 1 then
      redis.call('SADD', key('jp:' .. job), id)
    end
  end
end

-- Attempts are a list of small JSON records whose times are the text the client sent.
local function begin_attempt(id, n, worker)
  redis.call('RPUSH', akey(id), cjson.encode({n = n, w = worker, s = now}))
end

local function end_attempt(id, outcome, err)
  local last = redis.call('LINDEX', akey(id), -1)
  if not last then return end
  local a = cjson.decode(last)
  if a.e then return end
  a.e = now
  a.o = outcome
  if err then a.err = err end
  redis.call('LSET', akey(id), -1, cjson.encode(a))
end

-- The dead messages a requeue or purge names: ARGV[3] is 'ids' (the ids follow) or 'all'
-- (ARGV[4] is how many of the oldest dead to take in this call).
local function dead_ids()
  if ARGV[3] == 'all' then
    return redis.call('ZRANGE', key('s:dead'), 0, tonumber(ARGV[4]) - 1)
  end
  local ids = {}
  for i = 4, #ARGV do ids[#ids + 1] = ARGV[i] end
  return ids
end
