-- Apply a batch of outcomes, each by the fencing rule. ARGV[3..]: 6 fields per outcome:
-- kind, id, token, a, b, c, where for
--   complete:   a = '1' when there is a result, b = result, c = result expiry ('' for none)
--   reschedule: a = eta, b = error JSON
--   bury:       b = error JSON
--   release:    a = '1' when started, b = error JSON, c = error reason
-- Returns 1 (applied, or applied before with this token) or 0 (refused) per outcome.
local out = {}
local ready, scheduled = 0, 0
begin_batch()  -- the index and counter writes of every outcome go out together at the end
for i = 3, #ARGV, 6 do
  local kind, id, token, a, b, c = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3],
    ARGV[i + 4], ARGV[i + 5]
  local h = mkey(id)
  local f = redis.call('HMGET', h, 'state', 'token', 'job', 'deliveries', 'max_deliveries')
  if not f[1] or f[2] ~= token then
    out[#out + 1] = 0
  elseif f[1] ~= 'running' then
    out[#out + 1] = 1  -- already applied by an earlier call carrying the same token
  else
    local job = f[3]
    if kind == 'complete' then
      -- A running message has no result yet: only this (final) outcome writes one.
      if a == '1' then redis.call('HSET', h, 'result', b) end
      if c ~= '' then
        redis.call('HSET', h, 'rexp', c)
        zadd(key('rexp'), c, id)
      end
      end_attempt(id, 'succeeded', false)
      move(id, h, job, 'running', 'succeeded')
    elseif kind == 'reschedule' then
      redis.call('HINCRBY', h, 'retries', 1)
      redis.call('HSET', h, 'error', b, 'eta', a)
      end_attempt(id, 'retry', b)
      if tonumber(a) <= nnow then
        move(id, h, job, 'running', 'queued')
        ready = ready + 1
      else
        move(id, h, job, 'running', 'scheduled', a)
        scheduled = scheduled + 1
      end
    elseif kind == 'bury' then
      redis.call('HSET', h, 'error', b)
      end_attempt(id, 'dead', b)
      move(id, h, job, 'running', 'dead')
    elseif kind == 'release' then
      redis.call('HDEL', h, 'token')
      if a ~= '1' then
        redis.call('HINCRBY', h, 'deliveries', -1)
        redis.call('RPOP', akey(id))
        move(id, h, job, 'running', 'queued')
        ready = ready + 1
      else
        redis.call('HSET', h, 'error', b)
        end_attempt(id, c, b)
        if tonumber(f[4]) >= tonumber(f[5]) then
          move(id, h, job, 'running', 'dead')
        else
          move(id, h, job, 'running', 'queued')
          ready = ready + 1
        end
      end
    else
      flush_batch()  -- what came before it was applied; keep its indexes true
      return redis.error_reply('ERR unknown outcome kind ' .. kind)
    end
    out[#out + 1] = 1
  end
end
flush_batch()
wake('r', ready)
wake('s', scheduled)
return out
