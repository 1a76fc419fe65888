-- The store-wide half of enqueue, in the slot of "{prefix}": claims each message's id and
-- idempotency key, records the queue, and creates the job. Runs before the per-queue
-- enqueue.lua, so a retry after a lost reply finds its own reservation and completes it.
-- ARGV[1] is the base "{prefix}", ARGV[2] now, ARGV[3..5] the named job (id, name,
-- created_at; '' when none), then 4 fields per message: id, queue, idempotency key ('' or
-- '=' .. key), job ('' or '=' .. job id).
-- Returns a flat list: resolved id, store flag (1: the message is to be stored in its queue).
local base, now = ARGV[1], ARGV[2]
local named, named_name, named_created = ARGV[3], ARGV[4], ARGV[5]
local idx, ikeys = base .. ':idx', base .. ':ikeys'
local out = {}
for i = 6, #ARGV, 4 do
  local id, queue, ikey, job = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local q = redis.call('HGET', idx, id)
  local existing = (not q) and ikey ~= '' and redis.call('HGET', ikeys, string.sub(ikey, 2))
  if q then
    out[#out + 1] = id
    out[#out + 1] = (q == queue) and 1 or 0
  elseif existing then
    out[#out + 1] = existing
    out[#out + 1] = 0
  else
    redis.call('HSET', idx, id, queue)
    if ikey ~= '' then redis.call('HSET', ikeys, string.sub(ikey, 2), id) end
    redis.call('SADD', base .. ':queues', queue)
    if job ~= '' then
      job = string.sub(job, 2)
      if redis.call('HEXISTS', base .. ':jobs', job) == 0 then
        local name, created = job, now
        if job == named then
          name = named_name
          if named_created ~= '' then created = named_created end
        end
        redis.call('HSET', base .. ':jobs', job, cjson.encode({name = name, created_at = created}))
        redis.call('ZADD', base .. ':jobs_t', created, job)
      end
      redis.call('SADD', base .. ':jq:' .. job, queue)
    end
    out[#out + 1] = id
    out[#out + 1] = 1
  end
end
return out
