-- Reads an access, expiring it first if its deadline has passed, so a
-- reader never sees a challenge waiting past its deadline.
-- ARGV[2]: a field to add to the reply: 'token' for the scraper's own read,
--          'image' for GET, or ''
local status, expired = current_status(now_ms())
if not status then
  return bare('not_found')
end
local out = reply('done', expired)
if ARGV[2] ~= '' then
  local value = field(ARGV[2])
  if value then
    out[#out + 1] = ARGV[2]
    out[#out + 1] = value
  end
end
return out
