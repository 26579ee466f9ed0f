-- The gateway relayed an access's outbox up to and including an audit-trail
-- entry: `relay_from` moves past it, to the next entry, or goes when there is
-- none. A relay that comes late (another gateway already moved it further)
-- changes nothing.
-- KEYS[1]: the access hash   KEYS[2]: its audit trail
-- ARGV[1]: the id of the last entry relayed
-- Replies 1 if it moved `relay_from`, 0 otherwise.
local from = redis.call('HGET', KEYS[1], 'relay_from')
if not from or id_before(ARGV[1], from) then
  return 0
end
local next = redis.call('XRANGE', KEYS[2], '(' .. ARGV[1], '+', 'COUNT', 1)
if #next > 0 then
  redis.call('HSET', KEYS[1], 'relay_from', next[1][1])
else
  redis.call('HDEL', KEYS[1], 'relay_from')
end
return 1
