-- Reads an access, expiring it first if its deadline has passed, so a
-- reader never sees a challenge waiting past its deadline.
-- ARGV[2]: a field to add to the reply: 'token' for the scraper's own read,
--          'image' for GET, or ''
-- ARGV[3]: the customer a session limits the caller to, or ''
if not field('status') or not in_scope(ARGV[3]) then
  return bare('not_found')
end
local status, expired = current_status(now_ms())
local out = reply('done', expired)
if ARGV[2] ~= '' then
  local value = field(ARGV[2])
  if value then
    out[#out + 1] = ARGV[2]
    out[#out + 1] = value
  end
end
return out
