-- Drop purged messages from the store-wide indexes in the "{prefix}" slot. ARGV[1] is the
-- base, then tombstones "id\nkey". An idempotency key is freed only while it still names
-- the purged id, so a cleanup that runs twice never frees a key a newer message now holds.
local base = ARGV[1]
for i = 2, #ARGV do
  local id, ikey = string.match(ARGV[i], '^(.-)\n(.*)$')
  redis.call('HDEL', base .. ':idx', id)
  if ikey ~= '' and redis.call('HGET', base .. ':ikeys', ikey) == id then
    redis.call('HDEL', base .. ':ikeys', ikey)
  end
end
return 1
