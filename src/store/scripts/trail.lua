-- Reads an access's audit trail, oldest first.
-- KEYS[1]: the access hash   2fa:access:{<access>}
-- KEYS[2]: its audit trail   2fa:access:{<access>}:events
-- ARGV[1]: the customer a session limits the caller to, or ''
-- Replies the XRANGE, or false when the access has neither a challenge nor
-- a trail, or its challenge is not the session's customer's (checked in the
-- same step, so a re-post for another customer cannot slip in between).
if ARGV[1] ~= '' then
  if redis.call('HGET', KEYS[1], 'customer') ~= ARGV[1] then
    return false
  end
elseif redis.call('EXISTS', KEYS[1], KEYS[2]) == 0 then
  return false
end
return redis.call('XRANGE', KEYS[2], '-', '+')
