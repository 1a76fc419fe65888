-- Lease up to ARGV[3] ready messages of one queue: highest priority first, then oldest id.
-- ARGV[4] is the lease expiry (text), ARGV[5] the worker id; each token is ARGV[6] (fresh
-- random hex, the same length every call) .. its index .. ARGV[7] ('.' .. queue), unique
-- per claim and telling later calls which queue's slot holds the message. Scheduled messages whose eta has passed join the ready set
-- first (their state stays 'scheduled' until claimed, as the contract shows them).
-- Returns {deliveries, earliest eta still scheduled or false}, one array per delivery: id,
-- task, body, priority, deliveries, retries, max_deliveries, job ('' for none), token.
local limit, expires, worker = tonumber(ARGV[3]), ARGV[4], ARGV[5]
local due = redis.call('ZRANGEBYSCORE', key('sched'), '-inf', now, 'LIMIT', 0, 1000)
for _, id in ipairs(due) do
  redis.call('ZREM', key('sched'), id)
  redis.call('ZADD', key('ready'), ready_score(redis.call('HGET', mkey(id), 'priority')), id)
end
wake('r', #due)  -- they left the eta index that waiters watch: wake one to claim them
local out = {}
begin_batch()
if limit > 0 then
  local ids = redis.call('ZRANGE', key('ready'), 0, limit - 1)
  for i, id in ipairs(ids) do
    local h = mkey(id)
    local f = redis.call('HMGET', h, 'state', 'task', 'body', 'priority', 'retries',
      'max_deliveries', 'job')
    if f[1] == 'queued' or f[1] == 'scheduled' then
      local token = ARGV[6] .. i .. ARGV[7]
      local n = redis.call('HINCRBY', h, 'deliveries', 1)
      redis.call('HSET', h, 'token', token)
      move(id, h, f[7], f[1], 'running', expires)  -- its index writes are batched
      begin_attempt(id, n, worker)
      out[#out + 1] = {id, f[2], f[3], f[4], tostring(n), f[5], f[6], f[7] or '', token}
    else
      zrem(key('ready'), id)  -- a stale entry; the hash says where it belongs
    end
  end
end
flush_batch()
if redis.call('ZCARD', key('ready')) == 0 then
  redis.call('LREM', key('wake'), 0, 'r')
elseif redis.call('LLEN', key('wake')) == 0 then
  redis.call('LPUSH', key('wake'), 'r')  -- work is left: the next waiter must not sleep on it
end
-- The earliest eta still waiting, so the caller's next wait ends no later than it.
local head = redis.call('ZRANGE', key('sched'), 0, 0, 'WITHSCORES')
return {out, head[2] or false}
