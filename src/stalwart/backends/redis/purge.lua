-- Delete dead messages (their hash and attempts); the counters keep them as dead.
-- ARGV[3] is 'ids' (then the ids follow) or 'all' (then ARGV[4] is a batch size).
-- Each purged message leaves a tombstone "id\nkey" in the queue's 'purged' list until the
-- client has dropped it from the store-wide indexes (another slot, see unindex.lua), so a
-- lost reply leaves the cleanup to the next purge. Returns the purged count, then up to
-- 1000 pending tombstones.
local ids = dead_ids()
local n = 0
for _, id in ipairs(ids) do
  local h = mkey(id)
  local f = redis.call('HMGET', h, 'state', 'ikey')
  if f[1] == 'dead' then
    redis.call('DEL', h, akey(id))
    redis.call('ZREM', key('s:dead'), id)
    redis.call('ZREM', key('rexp'), id)
    redis.call('ZREM', key('dead_t'), id)
    redis.call('RPUSH', key('purged'), id .. '\n' .. (f[2] or ''))
    n = n + 1
  end
end
return {n, redis.call('LRANGE', key('purged'), 0, 999)}
