-- Prepended to every script that moves one access. Each script takes
--   KEYS[1]: the access hash   2fa:access:{<access>}
--   KEYS[2]: its wake list     2fa:access:{<access>}:wake
--   KEYS[3]: its audit trail   2fa:access:{<access>}:events
--   KEYS[4]: its submissions   2fa:access:{<access>}:submitted (submit_token)
--   ARGV[1]: its channel       2fa:access:{<access>}:changed
-- and replies
--   { outcome, left_waiting ('1' or '0'), outbox count, own count,
--     (audit id, type, attempt, at, by, reason) * outbox count,
--     field, value, ... }
-- where the fields are the hash as it is after the step, never with its
-- token, and with the image replaced by has_image = '1' (only GET sends the
-- image).
--
-- The outbox is every audit-trail entry not yet relayed to the customer's
-- feed and the webhooks, oldest first; the last `own count` of them are
-- this step's. It is the trail from the hash's `relay_from` on: a step that
-- records sets `relay_from` if it is unset, and the gateway moves it past
-- what it relayed (relay_done.lua). So an entry whose gateway died before
-- relaying it goes out with the next step, or with the sweep, which the
-- relay index (2fa:relay) sends here.

local WAITING = { need = true, question_sent = true }

-- How many entries this step recorded.
local OWN = 0

-- How many events an access's audit trail keeps.
local TRAIL_LENGTH = 100

-- The fields the steps read, fetched with one HMGET on first use rather
-- than a call each; a write to one of them updates it here too.
local HASH_FIELDS = { 'status', 'expires_at', 'attempt', 'kind', 'started_at',
  'customer', 'validation', 'relay_from' }
local H
local function field(name)
  if not H then
    H = {}
    local values = redis.call('HMGET', KEYS[1], unpack(HASH_FIELDS))
    for i, known in ipairs(HASH_FIELDS) do
      H[known] = values[i]
    end
  end
  return H[name]
end

-- Forgets what `field` read, after a write of many fields (a post).
local function reread()
  H = nil
end

-- A reply without the hash: nothing to relay, nothing recorded.
local function bare(outcome)
  return { outcome, '0', '0', '0' }
end

local function reply(outcome, left_waiting, hash)
  local out = { outcome, left_waiting and '1' or '0', '0', tostring(OWN) }
  local fields = redis.call('HGETALL', hash)
  local relay_from
  for i = 1, #fields, 2 do
    if fields[i] == 'relay_from' then
      relay_from = fields[i + 1]
    end
  end
  if relay_from then
    local outbox = redis.call('XRANGE', KEYS[3], relay_from, '+')
    out[3] = tostring(#outbox)
    for _, entry in ipairs(outbox) do
      local e = {}
      for i = 1, #entry[2], 2 do
        e[entry[2][i]] = entry[2][i + 1]
      end
      out[#out + 1] = entry[1]
      out[#out + 1] = e.type or ''
      out[#out + 1] = e.attempt or ''
      out[#out + 1] = e.at or ''
      out[#out + 1] = e.by or ''
      out[#out + 1] = e.reason or ''
    end
  end
  for i = 1, #fields, 2 do
    local field = fields[i]
    if field == 'image' then
      out[#out + 1] = 'has_image'
      out[#out + 1] = '1'
    elseif field ~= 'token' and field ~= 'relay_from' then
      out[#out + 1] = field
      out[#out + 1] = fields[i + 1]
    end
  end
  return out
end

-- The hash's remaining life, read once per step: only a post changes it.
local HASH_TTL
local function hash_ttl()
  if not HASH_TTL then
    HASH_TTL = redis.call('PTTL', KEYS[1])
  end
  return HASH_TTL
end

-- Keeps a key exactly as long as the access hash.
local function live_with_hash(key)
  local ttl = hash_ttl()
  if ttl > 0 then
    redis.call('PEXPIRE', key, ttl)
  end
end

-- Appends to the audit trail, which is also the outbox: it records who did
-- what and when, never a token. A new trail gets the hash's lifetime; an
-- existing one already has it (the post that created it set it).
local function record(kind, now, by, reason)
  local attempt = field('attempt')
  local id
  if reason and reason ~= '' then
    id = redis.call('XADD', KEYS[3], 'MAXLEN', TRAIL_LENGTH, '*',
      'type', kind, 'attempt', attempt, 'at', now, 'by', by, 'reason', reason)
  else
    id = redis.call('XADD', KEYS[3], 'MAXLEN', TRAIL_LENGTH, '*',
      'type', kind, 'attempt', attempt, 'at', now, 'by', by)
  end
  if not field('relay_from') then
    redis.call('HSET', KEYS[1], 'relay_from', id)
    H.relay_from = id
  end
  OWN = OWN + 1
  if kind == 'challenge' or redis.call('PTTL', KEYS[3]) < 0 then
    live_with_hash(KEYS[3])
  end
end

-- Records a new status and tells everyone who listens. A token lives only
-- while the status is token_received. The statuses that end a wait are also
-- pushed on the wake list, which lives exactly as long as the hash.
local function move(status, now, by, reason)
  redis.call('HSET', KEYS[1], 'status', status, 'updated_at', now)
  field('status')
  H.status = status
  if reason and reason ~= '' then
    redis.call('HSET', KEYS[1], 'reason', reason)
  end
  if status ~= 'token_received' then
    redis.call('HDEL', KEYS[1], 'token')
  end
  if status == 'token_received' or status == 'expired' or status == 'cancelled' then
    redis.call('RPUSH', KEYS[2], status)
    live_with_hash(KEYS[2])
  end
  record(status, now, by, reason)
  redis.call(PUBLISH, ARGV[1], status)
end

-- The status every step starts from. A waiting challenge past its deadline
-- is expired first (by the system), so no step acts on a challenge the
-- sweeper has not reached yet. Returns the status (false when there is no
-- challenge) and whether this call expired it.
local function current_status(now)
  local status = field('status')
  if WAITING[status] and tonumber(field('expires_at')) <= now then
    move('expired', now, 'system')
    return 'expired', true
  end
  return status, false
end
