-- The scraper used the token at the bank: token_received becomes ok or
-- rejected, and the token is deleted.
-- ARGV[2]: 'ok' or 'rejected'   ARGV[3]: reason, or '' for none
local now = now_ms()
local status, expired = current_status(now)
if not status then
  return { 'not_found', '0' }
end
if status ~= 'token_received' then
  return reply('refused', expired, KEYS[1])
end
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[1], 'reason', ARGV[3])
end
move(ARGV[2], now)
return reply('done', false, KEYS[1])
