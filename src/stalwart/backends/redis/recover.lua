-- Leases that expired before now (ARGV[2]) go back to 'queued', or to 'dead' with reason
-- worker-lost once the message had max_deliveries deliveries; at most ARGV[3] of them.
-- Also drops results whose TTL has passed, and final messages past their retention:
-- ARGV[4] / ARGV[5] are the cutoffs for succeeded-or-cancelled / dead ('' keeps them).
-- Deleted messages leave tombstones, as purge.lua does. Returns {flat list of id, new
-- state, ...; pending tombstones}.
local limit = tonumber(ARGV[3])
local out, ready = {}, 0
if limit > 0 then
  local ids = redis.call('ZRANGEBYSCORE', key('running'), '-inf', '(' .. now, 'LIMIT', 0, limit)
  for _, id in ipairs(ids) do
    local h = mkey(id)
    local f = redis.call('HMGET', h, 'state', 'deliveries', 'max_deliveries', 'job')
    if f[1] ~= 'running' then
      redis.call('ZREM', key('running'), id)  -- a stale entry; the hash says where it belongs
    else
      local lost = tonumber(f[2]) >= tonumber(f[3])
      local err = cjson.encode({reason = lost and 'worker-lost' or 'lease-expired',
        message = 'lease expired after delivery ' .. f[2]})
      end_attempt(id, 'lease-expired', err)
      redis.call('HDEL', h, 'token')
      redis.call('HSET', h, 'error', err)
      local to = lost and 'dead' or 'queued'
      move(id, h, f[4], 'running', to)
      if not lost then ready = ready + 1 end
      out[#out + 1] = id
      out[#out + 1] = to
    end
  end
end
local gone = redis.call('ZRANGEBYSCORE', key('rexp'), '-inf', now, 'LIMIT', 0, 10000)
for _, id in ipairs(gone) do
  redis.call('HDEL', mkey(id), 'result')
  redis.call('ZREM', key('rexp'), id)
end
local function prune(index, cutoff)
  if cutoff == '' then return end
  local ids = redis.call('ZRANGEBYSCORE', index, '-inf', '(' .. cutoff, 'LIMIT', 0, 500)
  for _, id in ipairs(ids) do
    local h = mkey(id)
    local f = redis.call('HMGET', h, 'state', 'ikey')
    redis.call('ZREM', index, id)
    if f[1] and FINAL[f[1]] then
      redis.call('DEL', h, akey(id))
      redis.call('ZREM', key('s:' .. f[1]), id)
      redis.call('ZREM', key('rexp'), id)
      redis.call('RPUSH', key('purged'), id .. '\n' .. (f[2] or ''))
    end
  end
end
prune(key('done_t'), ARGV[4])
prune(key('dead_t'), ARGV[5])
wake('r', ready)
return {out, redis.call('LRANGE', key('purged'), 0, 999)}
