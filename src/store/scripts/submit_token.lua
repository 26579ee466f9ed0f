-- The customer's token arrives: a waiting challenge becomes token_received.
-- ARGV[2]: token
-- ARGV[3]: the attempt the customer answered, or '' for any
-- ARGV[4]: the started_at of the challenge whose rule the gateway checked
--          the token against (started_at only ever grows, unlike attempt,
--          which starts over once a hash has expired)
-- Replies 'rule_changed' when a new challenge was posted since that check:
-- the gateway checks the token again against the new rule.
local now = now_ms()
local status, expired = current_status(now)
if not status then
  return { 'not_found', '0' }
end
local attempt = redis.call('HGET', KEYS[1], 'attempt')
if ARGV[3] ~= '' and attempt ~= ARGV[3] then
  return reply('attempt_mismatch', expired, KEYS[1])
end
if not WAITING[status] then
  return reply('refused', expired, KEYS[1])
end
if redis.call('HGET', KEYS[1], 'started_at') ~= ARGV[4] then
  return reply('rule_changed', expired, KEYS[1])
end
redis.call('HSET', KEYS[1], 'token', ARGV[2])
move('token_received', now, 'frontend')
return reply('done', true, KEYS[1])
