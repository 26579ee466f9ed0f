-- Leases the due lanes of one endpoint to this gateway: each lane's head
-- message is delivered by one gateway at a time, and another takes over
-- once the lease ends (a gateway that died mid-delivery).
-- KEYS[1..4]: the endpoint, its queue, lanes and messages (webhook_enqueue)
-- ARGV[1]: now (ms)   ARGV[2]: the lease (ms)   ARGV[3]: most lanes to take
-- Replies {} when the endpoint is gone or disabled, else { url, secret,
-- previous secret or '', until when it signs or '0', then lane, lease,
-- message id, record, ... }. The lease is the lane's score while it is
-- held: whoever completes the delivery must still hold it.
local endpoint = redis.call('HMGET', KEYS[1], 'disabled', 'url', 'secret',
  'previous_secret', 'previous_until')
if endpoint[1] ~= '0' then
  return {}
end
local out = { endpoint[2], endpoint[3], endpoint[4] or '', endpoint[5] or '0' }
local now = tonumber(ARGV[1])
local lease = tostring(now + tonumber(ARGV[2]))
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
for _, lane in ipairs(due) do
  local queued = redis.call('HGET', KEYS[3], lane)
  local id = queued and string.match(queued, '^(%S+)')
  local record = id and redis.call('HGET', KEYS[4], id)
  if record then
    redis.call('ZADD', KEYS[2], lease, lane)
    out[#out + 1] = lane
    out[#out + 1] = lease
    out[#out + 1] = id
    out[#out + 1] = record
  else
    -- A lane with nothing behind it (a hand edit): nothing to deliver.
    redis.call('ZREM', KEYS[2], lane)
    redis.call('HDEL', KEYS[3], lane)
  end
end
return out
