-- Delete dead messages (their hash and attempts); the counters keep them as dead.
-- ARGV[3] is 'ids' (then the ids follow) or 'all' (then ARGV[4] is a batch size).
-- Returns a flat list: id, idempotency key ('' for none), ... so the client can drop them
-- from the store-wide indexes, which live in another slot.
local ids
if ARGV[3] == 'all' then
  ids = redis.call('ZRANGE', key('s:dead'), 0, tonumber(ARGV[4]) - 1)
else
  ids = {}
  for i = 4, #ARGV do ids[#ids + 1] = ARGV[i] end
end
local out = {}
for _, id in ipairs(ids) do
  local h = mkey(id)
  local f = redis.call('HMGET', h, 'state', 'ikey')
  if f[1] == 'dead' then
    redis.call('DEL', h, akey(id))
    redis.call('ZREM', key('s:dead'), id)
    redis.call('ZREM', key('rexp'), id)
    out[#out + 1] = id
    out[#out + 1] = f[2] or ''
  end
end
return out
