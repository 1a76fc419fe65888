-- Store a batch of new messages in one queue: those reserve.lua kept, inside the same
-- store.lua call, or in a call of its own after it. ARGV[3] is the queue name, then 9 fields
-- per message: id, task, body, priority, eta ('' for none), max_deliveries, job ('' or '=' ..
-- job id), idempotency key ('' or '=' .. key), created_at. A message whose hash already
-- exists is left alone (a retried call after a lost reply, or another producer that stored
-- first under the same reserved id: see reserve.lua), so only new ones count as accepted.
-- Returns 1 (stored) or 0 (already there) per message.
local queue = ARGV[3]
local out, ready, scheduled = {}, 0, 0
for i = 4, #ARGV, 9 do
  local id = ARGV[i]
  local h = mkey(id)
  if redis.call('EXISTS', h) == 1 then
    out[#out + 1] = 0
  else
    local eta, job, ikey = ARGV[i + 4], ARGV[i + 6], ARGV[i + 7]
    redis.call('HSET', h, 'id', id, 'task', ARGV[i + 1], 'queue', queue, 'body', ARGV[i + 2],
      'priority', ARGV[i + 3], 'max_deliveries', ARGV[i + 5], 'created_at', ARGV[i + 8],
      'retries', 0, 'deliveries', 0)
    if eta ~= '' then redis.call('HSET', h, 'eta', eta) end
    if ikey ~= '' then redis.call('HSET', h, 'ikey', string.sub(ikey, 2)) end
    if job ~= '' then
      job = string.sub(job, 2)
      redis.call('HSET', h, 'job', job)
    else
      job = false
    end
    if eta ~= '' and tonumber(eta) > nnow then
      move(id, h, job, false, 'scheduled', eta)
      scheduled = scheduled + 1
    else
      move(id, h, job, false, 'queued')
      ready = ready + 1
    end
    out[#out + 1] = 1
  end
end
wake('r', ready)
wake('s', scheduled)
return out
