-- The best ARGV[3] ready messages of one queue, without claiming them, for a claim that
-- spans queues: the client merges the heads of every queue, then claims from each queue
-- its share. Due scheduled messages join the ready set first, as in claim.lua.
-- Returns a flat list: id, score, id, score, ...
local limit = tonumber(ARGV[3])
local due = redis.call('ZRANGEBYSCORE', key('sched'), '-inf', now, 'LIMIT', 0, 1000)
for _, id in ipairs(due) do
  redis.call('ZREM', key('sched'), id)
  redis.call('ZADD', key('ready'), ready_score(redis.call('HGET', mkey(id), 'priority')), id)
end
wake('r', #due)  -- they left the eta index that waiters watch: wake one to claim them
if limit <= 0 then return {} end
return redis.call('ZRANGE', key('ready'), 0, limit - 1, 'WITHSCORES')
