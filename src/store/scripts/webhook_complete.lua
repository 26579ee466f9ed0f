-- Records one try of a lane's head message, if this gateway still holds the
-- lane's lease, and moves the lane on.
-- KEYS[1..5]: the endpoint, its queue, lanes, messages and history
-- ARGV[1]: lane   ARGV[2]: the lease it was claimed with   ARGV[3]: message id
-- ARGV[4]: 'delivered', 'retry' (ARGV[6] says when), 'failed' (no tries
--          left), or 'gone' (a 410: the endpoint is disabled, and every
--          pending message fails)
-- ARGV[5]: the message's record after this try
-- ARGV[6]: when the next try is due (ms), for 'retry'
-- ARGV[7]: now (ms)   ARGV[8]: most messages kept   ARGV[9]: for how long (ms)
-- Replies 'done', or 'lost' when the lease was lost (it ran out and another
-- gateway took the lane, or the endpoint was deleted): nothing is written.
local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not score or tonumber(score) ~= tonumber(ARGV[2]) then
  return 'lost'
end
local now = tonumber(ARGV[7])
redis.call('HSET', KEYS[4], ARGV[3], ARGV[5])
local function pop(lane)
  local queued = redis.call('HGET', KEYS[3], lane) or ''
  local rest = string.match(queued, '^%S+%s+(.+)$')
  if rest then
    redis.call('HSET', KEYS[3], lane, rest)
    redis.call('ZADD', KEYS[2], now, lane)
  else
    redis.call('HDEL', KEYS[3], lane)
    redis.call('ZREM', KEYS[2], lane)
  end
end
if ARGV[4] == 'retry' then
  redis.call('ZADD', KEYS[2], ARGV[6], ARGV[1])
elseif ARGV[4] == 'gone' then
  redis.call('HSET', KEYS[1], 'disabled', '1')
  local lanes = redis.call('HGETALL', KEYS[3])
  for i = 2, #lanes, 2 do
    for id in string.gmatch(lanes[i], '%S+') do
      local record = redis.call('HGET', KEYS[4], id)
      if record and id ~= ARGV[3] then
        local r = cjson.decode(record)
        r.state = 'failed'
        r.nextTryAt = nil
        redis.call('HSET', KEYS[4], id, cjson.encode(r))
      end
    end
  end
  redis.call('DEL', KEYS[2], KEYS[3])
else
  pop(ARGV[1])
end
-- History: at most ARGV[8] messages, none older than ARGV[9]; a message
-- still pending stays until it is done.
local function forget(ids)
  for _, id in ipairs(ids) do
    local record = redis.call('HGET', KEYS[4], id)
    if not record or cjson.decode(record).state ~= 'pending' then
      redis.call('HDEL', KEYS[4], id)
      redis.call('ZREM', KEYS[5], id)
    end
  end
end
local excess = redis.call('ZCARD', KEYS[5]) - tonumber(ARGV[8])
if excess > 0 then
  forget(redis.call('ZRANGE', KEYS[5], 0, excess - 1))
end
forget(redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now - tonumber(ARGV[9]), 'LIMIT', 0, 100))
return 'done'
