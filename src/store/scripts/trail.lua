-- Reads an access's audit trail, oldest first.
-- KEYS[1]: the access hash   2fa:access:{<access>}
-- KEYS[2]: its audit trail   2fa:access:{<access>}:events
-- ARGV[1]: the customer a session limits the caller to, or ''
-- Replies the XRANGE, or false when the access has neither a challenge nor
-- a trail, or its challenge is not the session's customer's (checked in the
-- same step, so a re-post for another customer cannot slip in between). A
-- session reads only the attempts since its customer took the access
-- (`customer_since`), never an earlier customer's.
if ARGV[1] == '' then
  if redis.call('EXISTS', KEYS[1], KEYS[2]) == 0 then
    return false
  end
  return redis.call('XRANGE', KEYS[2], '-', '+')
end
local owner = redis.call('HMGET', KEYS[1], 'customer', 'customer_since')
if owner[1] ~= ARGV[1] then
  return false
end
-- A hash from before `customer_since` shows its current attempt alone.
local since = tonumber(owner[2] or redis.call('HGET', KEYS[1], 'attempt'))
local out = {}
for _, entry in ipairs(redis.call('XRANGE', KEYS[2], '-', '+')) do
  for i = 1, #entry[2], 2 do
    if entry[2][i] == 'attempt' then
      if tonumber(entry[2][i + 1]) >= since then
        out[#out + 1] = entry
      end
      break
    end
  end
end
return out
