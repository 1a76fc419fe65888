-- Enqueue in one round trip: reserve.lua's step for every message, then enqueue.lua's for
-- each queue's kept messages, in one atomic call, so no producer of this script is ever
-- between the two steps. A reservation left unstored by a producer that made the two steps
-- as two calls and died between them is completed as reserve.lua describes.
-- Loaded after lib.lua, reserve.lua and enqueue.lua, each of the last two wrapped as a local
-- function of its name that takes its own ARGV (see scripts.py). lib.lua's `base` is
-- re-pointed at each queue before its store: its helpers' closures read that local.
-- ARGV is reserve.lua's (ARGV[1] the base "{prefix}", ARGV[2] now, the named job, the pending
-- ids), except that each message has 10 fields: reserve.lua's 4 (id, queue, idempotency key,
-- job), then task, body, priority, eta ('' for none), max_deliveries, created_at.
-- Returns reserve.lua's answers. Writes span the store-wide slot and the queues' slots (a
-- message may be stored in the queue its id was reserved for, which the client cannot know):
-- a single server only. On Redis Cluster, enqueue would run reserve.lua and enqueue.lua apart.
local WIDTH = 10
local head = 6 + tonumber(ARGV[6])
local qprefix = string.sub(ARGV[1], 1, -2) .. ':'

-- reserve.lua's arguments: the same head, then the first 4 fields of each message.
local function reserve_args()
  local args = {}
  for i = 1, head do args[i] = ARGV[i] end
  for i = head + 1, #ARGV, WIDTH do
    for j = i, i + 3 do args[#args + 1] = ARGV[j] end
  end
  return args
end

-- enqueue.lua's arguments for each queue, in first-seen order: the messages reserve.lua kept,
-- under their resolved id and queue, without the idempotency key when it answered flag 2.
local function enqueue_args(answers)
  local order, by_queue = {}, {}
  for n, answer in ipairs(answers) do
    local i = head + 1 + (n - 1) * WIDTH
    local id, queue, ikey, flag = ARGV[i], ARGV[i + 1], ARGV[i + 2], 1
    if answer ~= 1 then id, flag, queue = answer[1], answer[2], answer[3] end
    if flag ~= 0 then
      if flag == 2 then ikey = '' end
      local args = by_queue[queue]
      if not args then
        args = {qprefix .. queue .. '}', now, queue}
        by_queue[queue] = args
        order[#order + 1] = args
      end
      for _, v in ipairs({id, ARGV[i + 4], ARGV[i + 5], ARGV[i + 6], ARGV[i + 7], ARGV[i + 8],
                          ARGV[i + 3], ikey, ARGV[i + 9]}) do
        args[#args + 1] = v
      end
    end
  end
  return order
end

local answers = reserve(reserve_args())
for _, args in ipairs(enqueue_args(answers)) do
  base = args[1]
  enqueue(args)
end
return answers
