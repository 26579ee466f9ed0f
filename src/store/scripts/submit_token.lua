-- The customer's token arrives: a waiting challenge becomes token_received.
-- ARGV[2]: token   ARGV[3]: the attempt the customer answered, or '' for any
local now = now_ms()
local status, expired = current_status(now)
if not status then
  return { 'not_found', '0' }
end
if ARGV[3] ~= '' and redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[3] then
  return reply('attempt_mismatch', expired, KEYS[1])
end
if not WAITING[status] then
  return reply('refused', expired, KEYS[1])
end
redis.call('HSET', KEYS[1], 'token', ARGV[2])
move('token_received', now)
return reply('done', true, KEYS[1])
