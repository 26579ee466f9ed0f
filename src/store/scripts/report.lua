-- The scraper's verdict: token_received becomes ok or rejected, and the
-- token is deleted. A decoupled challenge, which takes no token, goes there
-- straight from waiting.
-- ARGV[2]: 'ok' or 'rejected'   ARGV[3]: reason, or '' for none
local now = now_ms()
local status, expired = current_status(now)
if not status then
  return bare('not_found')
end
local decoupled = field('kind') == 'decoupled'
if not (status == 'token_received' or (decoupled and WAITING[status])) then
  return reply('refused', expired)
end
move(ARGV[2], now, 'scraper', ARGV[3])
return reply('done', WAITING[status] ~= nil or status == 'token_received')
