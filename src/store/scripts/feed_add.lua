-- Appends a customer's events to their live feed, and wakes the gateways
-- whose feed clients read it.
-- KEYS[1]: the feed      2fa:customer:{<customer>}:events
-- KEYS[2]: the latest audit-trail id announced per access
--                        2fa:customer:{<customer>}:latest
-- ARGV[1]: the feed's channel   2fa:customer:{<customer>}:changed
-- ARGV[2]: how many entries to keep   ARGV[3]: how long (ms)
-- ARGV[4]: how long the keys live after the last append (ms)
-- ARGV[5], ...: entries, six values each: event ('challenge' or 'status'),
--               access, status, attempt, at (ms), and the id of the audit
--               trail entry it comes from
-- Two gateways may append one access's events in the wrong order (each
-- writes after its own step). A status older than one already announced
-- for that access is dropped, so a front end never sees an access go back.
-- A challenge is always announced: it carries the question.
-- Entries are removed with XDEL, by count and by age, which (unlike XTRIM)
-- moves the stream's max-deleted-entry-id: a reader behind it knows it
-- missed some. Replies the id of the last entry added, or '' for none.
local id = ''
for i = 5, #ARGV, 6 do
  local access, seq = ARGV[i + 1], ARGV[i + 5]
  local latest = redis.call('HGET', KEYS[2], access)
  local stale = latest and not id_before(latest, seq)
  -- A gateway that retries after a timeout may bring the same entry twice.
  local again = latest == seq
  if not again and (ARGV[i] == 'challenge' or not stale) then
    id = redis.call('XADD', KEYS[1], '*',
      'event', ARGV[i], 'access', access, 'status', ARGV[i + 2],
      'attempt', ARGV[i + 3], 'at', ARGV[i + 4])
  end
  if not stale then
    redis.call('HSET', KEYS[2], access, seq)
  end
end
local excess = redis.call('XLEN', KEYS[1]) - tonumber(ARGV[2])
if excess > 0 then
  for _, entry in ipairs(redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', excess)) do
    redis.call('XDEL', KEYS[1], entry[1])
  end
end
local oldest = now_ms() - tonumber(ARGV[3])
for _, entry in ipairs(redis.call('XRANGE', KEYS[1], '-', oldest)) do
  redis.call('XDEL', KEYS[1], entry[1])
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
if id ~= '' then
  redis.call(PUBLISH, ARGV[1], id)
end
return id
