-- Create or refresh a worker's entry, and drop entries that expired. ARGV[1] is the base
-- "{prefix}", ARGV[2] now, ARGV[3] the worker id, ARGV[4] its JSON, ARGV[5] live-until.
local base, now = ARGV[1], ARGV[2]
local info, until_t = base .. ':workers', base .. ':workers_t'
local gone = redis.call('ZRANGEBYSCORE', until_t, '-inf', '(' .. now)
for _, id in ipairs(gone) do
  redis.call('HDEL', info, id)
  redis.call('ZREM', until_t, id)
end
redis.call('HSET', info, ARGV[3], ARGV[4])
redis.call('ZADD', until_t, ARGV[5], ARGV[3])
return 1
