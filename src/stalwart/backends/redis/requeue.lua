-- Dead messages back to 'queued' with a full budget (retries and deliveries 0); the dead
-- counters lose one each. ARGV[3] is 'ids' (then the ids follow) or 'all' (then ARGV[4] is
-- how many of the oldest dead to take in this call). Returns how many were requeued.
local ids = dead_ids()
local n = 0
for _, id in ipairs(ids) do
  local h = mkey(id)
  local f = redis.call('HMGET', h, 'state', 'job')
  if f[1] == 'dead' then
    redis.call('HSET', h, 'retries', 0, 'deliveries', 0)
    redis.call('HDEL', h, 'eta', 'token')
    move(id, h, f[2], 'dead', 'queued')
    n = n + 1
  end
end
wake('r', n)
return n
