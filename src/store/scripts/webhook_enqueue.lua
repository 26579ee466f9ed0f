-- Queues messages for one endpoint, each behind the earlier messages of its
-- lane (its access): one lane delivers one message at a time, in order.
-- KEYS[1]: the endpoint   2fa:webhook:{<id>}
-- KEYS[2]: its queue      2fa:webhook:{<id>}:queue, lane -> when its head
--                         is due (or its lease ends), in ms
-- KEYS[3]: its lanes      2fa:webhook:{<id>}:lanes, lane -> pending message
--                         ids, oldest first, space-separated
-- KEYS[4]: its messages   2fa:webhook:{<id>}:messages, id -> JSON record
-- KEYS[5]: its history    2fa:webhook:{<id>}:history, id -> created (ms)
-- ARGV[1]: now (ms)   ARGV[2]: how long the keys live after a write (ms)
-- ARGV[3], ...: messages, three values each: id, lane, record
-- A message the endpoint already has (a relay brought twice) is skipped;
-- nothing is queued for an endpoint that is gone or disabled. Replies how
-- many were queued.
if redis.call('HGET', KEYS[1], 'disabled') ~= '0' then
  return 0
end
local now = tonumber(ARGV[1])
local added = 0
for i = 3, #ARGV, 3 do
  local id, lane = ARGV[i], ARGV[i + 1]
  if redis.call('HSETNX', KEYS[4], id, ARGV[i + 2]) == 1 then
    redis.call('ZADD', KEYS[5], now, id)
    local queued = redis.call('HGET', KEYS[3], lane)
    if queued then
      redis.call('HSET', KEYS[3], lane, queued .. ' ' .. id)
    else
      redis.call('HSET', KEYS[3], lane, id)
      redis.call('ZADD', KEYS[2], now, lane)
    end
    added = added + 1
  end
end
-- The keys go a day after the last message queued; a relay that brought
-- nothing new leaves them as they were.
if added > 0 then
  for k = 2, 5 do
    redis.call('PEXPIRE', KEYS[k], ARGV[2])
  end
end
return added
