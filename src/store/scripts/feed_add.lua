-- Appends a customer's events to their live feed, and wakes the gateways
-- whose feed clients read it. The feed keeps the last ARGV[2] entries, none
-- older than ARGV[3] ms. The oldest entries beyond the count are removed
-- with XDEL, which (unlike XTRIM) moves the stream's max-deleted-entry-id,
-- so a reader can tell it missed them; age is told by the ids themselves.
-- KEYS[1]: the feed      2fa:customer:{<customer>}:events
-- ARGV[1]: its channel   2fa:customer:{<customer>}:changed
-- ARGV[2]: how many entries to keep   ARGV[3]: how long (ms)
-- ARGV[4], ...: entries, five values each: event ('challenge' or 'status'),
--               access, status, attempt, at (ms)
-- Replies the id of the last entry added.
local id
for i = 4, #ARGV, 5 do
  id = redis.call('XADD', KEYS[1], '*',
    'event', ARGV[i], 'access', ARGV[i + 1], 'status', ARGV[i + 2],
    'attempt', ARGV[i + 3], 'at', ARGV[i + 4])
end
local excess = redis.call('XLEN', KEYS[1]) - tonumber(ARGV[2])
if excess > 0 then
  for _, entry in ipairs(redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', excess)) do
    redis.call('XDEL', KEYS[1], entry[1])
  end
end
redis.call('XTRIM', KEYS[1], 'MINID', now_ms() - tonumber(ARGV[3]))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PUBLISH', ARGV[1], id)
return id
