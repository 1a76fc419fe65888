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

-- The one state transition: message `id` (hash `h`, member of job `job` or false) goes from
-- `from` (false when new) to `to`. Keeps the per-state index, the claim indexes (ready by
-- priority, scheduled by eta, running by lease expiry) and the queue and job counters in
-- step. `score` is the eta for scheduled, the lease expiry for running.
local function move(id, h, job, from, to, score)
  local stats = key('stats')
  local jk = job and key('j:' .. job)
  if from then
    redis.call('ZREM', key('s:' .. from), id)
    if from == 'queued' or from == 'scheduled' then
      redis.call('ZREM', key('ready'), id)
      redis.call('ZREM', key('sched'), id)
    elseif from == 'running' then
      redis.call('ZREM', key('running'), id)
      redis.call('HDEL', h, 'expires')
      if job then redis.call('SREM', key('jp:' .. job), id) end
    end
    if from == 'dead' then redis.call('ZREM', key('dead_t'), id) end
    redis.call('HINCRBY', stats, from, -1)
    if jk then redis.call('HINCRBY', jk, from, -1) end
  else
    redis.call('HINCRBY', stats, 'accepted', 1)
    if jk then redis.call('HINCRBY', jk, 'accepted', 1) end
  end
  redis.call('ZADD', key('s:' .. to), 0, id)
  redis.call('HINCRBY', stats, to, 1)
  if jk then redis.call('HINCRBY', jk, to, 1) end
  redis.call('HSET', h, 'state', to, 'updated_at', now)
  if to == 'dead' then
    redis.call('ZADD', key('dead_t'), now, id)
  elseif FINAL[to] then
    redis.call('ZADD', key('done_t'), now, id)
  end
  if to == 'queued' then
    redis.call('ZADD', key('ready'), ready_score(redis.call('HGET', h, 'priority')), id)
  elseif to == 'scheduled' then
    redis.call('ZADD', key('sched'), score, id)
  elseif to == 'running' then
    redis.call('ZADD', key('running'), score, id)
    redis.call('HSET', h, 'expires', score)
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

-- The job a message belongs to, or false.
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

local function job_of(h)
  return redis.call('HGET', h, 'job')
end
