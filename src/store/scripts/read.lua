-- Reads an access, expiring it first if its deadline has passed, so a
-- reader never sees a challenge waiting past its deadline.
-- ARGV[2]: '1' to include the token (the scraper's own read), else '0'
local status, expired = current_status(now_ms())
if not status then
  return { 'not_found', '0' }
end
local out = reply('done', expired, KEYS[1])
local token = redis.call('HGET', KEYS[1], 'token')
if ARGV[2] == '1' and token then
  out[#out + 1] = 'token'
  out[#out + 1] = token
end
return out
