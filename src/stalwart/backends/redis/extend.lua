-- Heartbeat: ARGV[3] is the new expiry, then (id, token) pairs. A lease is held when the
-- message is running with that token, even past its expiry if nobody recovered it yet.
-- Returns 1 (extended) or 0 (not held) per lease.
local expires = ARGV[3]
local out = {}
for i = 4, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local h = mkey(id)
  local f = redis.call('HMGET', h, 'state', 'token')
  if f[1] == 'running' and f[2] == token then
    redis.call('HSET', h, 'expires', expires)
    redis.call('ZADD', key('running'), expires, id)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
