-- Relays an access's outbox to its customer's live feed, and wakes the
-- gateways whose feed clients read it; drops the access from the customer's
-- pending index when the step that relays it left waiting (both keys are in
-- the customer's slot, so one call does both).
-- KEYS[1]: the feed      2fa:customer:{<customer>}:events
-- KEYS[2]: the latest audit-trail id relayed per access
--                        2fa:customer:{<customer>}:latest
-- KEYS[3]: the pending index   2fa:customer:{<customer>}:pending
-- ARGV[1]: the feed's channel   2fa:customer:{<customer>}:changed
-- ARGV[2]: how many entries to keep
-- ARGV[3]: now (Unix ms, by the gateway's clock)
-- ARGV[4]: how long the keys live after the last append (ms)
-- ARGV[5]: the access to drop from the pending index, or ''
-- ARGV[6]: the score its entry must still have (the caller's started_at)
-- ARGV[7]: how long entries are kept (ms): older ones go
-- ARGV[8]: how often (ms) the keys' lifetimes are renewed and old entries go
-- ARGV[9], ...: entries, six values each: event ('challenge' or 'status'),
--               access, status, attempt, at (ms), and the id of the audit
--               trail entry it comes from, oldest first
-- Relaying is at least once: a gateway that retries, or two that relay one
-- outbox at once, bring the same entries again. An entry no later than the
-- latest relayed for its access is one the feed already has, and is
-- dropped; as every relay brings the whole outbox in order, nothing earlier
-- can still be missing.
-- Entries are removed with XDEL, by count on every append and by age,
-- which (unlike XTRIM) moves the stream's max-deleted-entry-id: a reader
-- behind it knows it missed some. The age trim and the keys' lifetimes are
-- housekeeping, done at most once per ARGV[8] (the time of the last is the
-- latest hash's field `~kept`, a name no access can have), with lifetimes
-- long enough to last until the next. Replies the id of the last entry
-- added, or '' for none.
local KEPT = '~kept'
if ARGV[5] ~= '' then
  local score = redis.call('ZSCORE', KEYS[3], ARGV[5])
  if score and tonumber(score) == tonumber(ARGV[6]) then
    redis.call('ZREM', KEYS[3], ARGV[5])
  end
end
local now, every = tonumber(ARGV[3]), tonumber(ARGV[8])
local id, added, housekeep = '', 0, false
for i = 9, #ARGV, 6 do
  local access, seq = ARGV[i + 1], ARGV[i + 5]
  local latest
  if i == 9 then
    -- The first entry's lookup also reads when the keys were last kept.
    local read = redis.call('HMGET', KEYS[2], access, KEPT)
    local kept = tonumber(read[2])
    latest = read[1]
    housekeep = not kept or now - kept >= every or kept > now
  else
    latest = redis.call('HGET', KEYS[2], access)
  end
  if not latest or id_before(latest, seq) then
    id = redis.call('XADD', KEYS[1], '*',
      'event', ARGV[i], 'access', access, 'status', ARGV[i + 2],
      'attempt', ARGV[i + 3], 'at', ARGV[i + 4])
    if housekeep and added == 0 then
      redis.call('HSET', KEYS[2], access, seq, KEPT, now)
    else
      redis.call('HSET', KEYS[2], access, seq)
    end
    added = added + 1
  end
end
if id == '' then
  return ''
end
local length = redis.call('XLEN', KEYS[1])
local excess = length - tonumber(ARGV[2])
if excess > 0 then
  for _, entry in ipairs(redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', excess)) do
    redis.call('XDEL', KEYS[1], entry[1])
  end
end
if length == added and not housekeep then
  -- The stream was gone (a hand edit) while the hash was not: this append
  -- started it, without a lifetime.
  housekeep = true
  redis.call('HSET', KEYS[2], KEPT, now)
end
if housekeep then
  -- At most ten batches of a hundred: a feed with more past their
  -- retention is left due for housekeeping, so the next append goes on.
  local oldest = now - tonumber(ARGV[7])
  for batch = 1, 10 do
    local old = redis.call('XRANGE', KEYS[1], '-', oldest, 'COUNT', 100)
    for _, entry in ipairs(old) do
      redis.call('XDEL', KEYS[1], entry[1])
    end
    if #old < 100 then
      break
    elseif batch == 10 then
      redis.call('HSET', KEYS[2], KEPT, 0)
    end
  end
  local keep = tonumber(ARGV[4]) + every
  redis.call('PEXPIRE', KEYS[1], keep)
  redis.call('PEXPIRE', KEYS[2], keep)
end
redis.call(PUBLISH, ARGV[1], id)
return id
