-- The scraper or the front end gives up: any status that is not final
-- becomes cancelled, and the token, if any, is deleted.
-- ARGV[2]: who cancels, 'scraper' or 'frontend'
-- ARGV[3]: the customer a session limits the caller to, or ''
if not field('status') or not in_scope(ARGV[3]) then
  return bare('not_found')
end
local now = now_ms()
local status, expired = current_status(now)
if not (WAITING[status] or status == 'token_received') then
  return reply('refused', expired)
end
move('cancelled', now, ARGV[2])
return reply('done', WAITING[status] ~= nil or status == 'token_received')
