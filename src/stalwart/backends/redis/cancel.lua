-- Cancel queued or scheduled messages: ARGV[3..] are ids. Returns 1 (cancelled) or 0 each.
local out = {}
for i = 3, #ARGV do
  local id = ARGV[i]
  local h = mkey(id)
  local f = redis.call('HMGET', h, 'state', 'job')
  if f[1] == 'queued' or f[1] == 'scheduled' then
    redis.call('HSET', h, 'error', '{"reason":"cancelled"}')
    move(id, h, f[2], f[1], 'cancelled')
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
