-- Counts a token submission against the access's limit, then reads the
-- rule the token must follow. Every submission counts, whatever becomes of
-- it, so a compromised front end cannot try codes at speed.
-- KEYS[1]: the access hash   KEYS[2]: its submissions 2fa:access:{<access>}:submissions
-- ARGV[1]: submissions allowed per window, or '' to read without counting
--          (a second look within one request)
-- ARGV[2]: the window (ms)
-- ARGV[3], ...: the hash fields to read
-- Replies { 'not_found' } without counting, { 'throttled', ms to wait }, or
-- { 'ok', value, ... } with the fields' values in order (nil when absent).
if redis.call('EXISTS', KEYS[1]) == 0 then
  return { 'not_found' }
end
if ARGV[1] ~= '' then
  local now = now_ms()
  local window = tonumber(ARGV[2])
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
  local count = redis.call('ZCARD', KEYS[2])
  if count >= tonumber(ARGV[1]) then
    local oldest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
    return { 'throttled', tostring(tonumber(oldest[2]) + window - now) }
  end
  redis.call('ZADD', KEYS[2], now, now .. '-' .. count)
  redis.call('PEXPIRE', KEYS[2], window)
end
local out = { 'ok' }
for i = 3, #ARGV do
  out[#out + 1] = redis.call('HGET', KEYS[1], ARGV[i])
end
return out
