-- A running task's progress report: ARGV[3] id, ARGV[4] token, ARGV[5] the progress as JSON.
-- Refused (0) unless the lease is held.
local id, token = ARGV[3], ARGV[4]
local h = mkey(id)
local f = redis.call('HMGET', h, 'state', 'token', 'job')
if f[1] ~= 'running' or f[2] ~= token then return 0 end
redis.call('HSET', h, 'progress', ARGV[5])
if f[3] then redis.call('SADD', key('jp:' .. f[3]), id) end
return 1
