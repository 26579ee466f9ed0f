-- Shared by every function that moves one access. Each takes
--   KEYS[1]: the access hash   2fa:access:{<access>}
--   KEYS[2]: its wake list     2fa:access:{<access>}:wake
--   KEYS[3]: its audit trail   2fa:access:{<access>}:events
--   KEYS[4]: its submissions   2fa:access:{<access>}:submitted (submit_token)
--   KEYS[5]: on a single Redis, the relay index   2fa:relay
--   ARGV[1]: its channel       2fa:access:{<access>}:changed
-- and replies
--   { outcome, left_waiting ('1' or '0'), outbox count, own count,
--     (audit id, type, attempt, at, by, reason) * outbox count,
--     field, value, ... }
-- where left_waiting says the step ended what the expiring index watches
-- for this challenge (a wait, or a token waiting for its report), and the
-- fields are the hash as it is after the step, never with its
-- token, and with the image replaced by has_image = '1' (only GET sends the
-- image).
--
-- The outbox is every audit-trail entry not yet relayed to the customer's
-- feed and the webhooks, oldest first; the last `own count` of them are
-- this step's. A step that records adds the hash field `relay:<id>`, named
-- after its first entry, and the outbox is the trail from the earliest such
-- field on. The fields come back with the rest of the hash; once the
-- gateway has relayed the outbox it deletes the fields it was given, with a
-- plain HDEL, which leaves any field a later step added. So an entry whose
-- gateway died before relaying it goes out with the next step, or with the
-- sweep, which the relay index sends here. On a single Redis the step
-- writes its own relay mark there, `<access>|<id>` scored by when it was
-- written, with the field; on a cluster, where the index is in other
-- slots, the gateway writes a mark before the step instead.

local WAITING = { need = true, question_sent = true }

-- The entries this step recorded, as the reply carries them.
local OWN = {}

-- How many events an access's audit trail keeps.
local TRAIL_LENGTH = 100

-- The hash, read with one HGETALL on first use and kept up to date by
-- every write below (`hset`, `hdel`), so that the reply needs no second read.
local H
local function field(name)
  if not H then
    H = {}
    local flat = redis.call('HGETALL', KEYS[1])
    for i = 1, #flat, 2 do
      H[flat[i]] = flat[i + 1]
    end
  end
  return H[name]
end

-- Writes `field, value, ...` pairs to the hash, and to `H` once it is read,
-- as the strings the hash keeps (a time in ms has 13 digits, well within
-- the 14 that tostring keeps).
local function hset(values)
  redis.call('HSET', KEYS[1], unpack(values))
  if H then
    for i = 1, #values, 2 do
      H[values[i]] = tostring(values[i + 1])
    end
  end
end

-- Deletes fields from the hash, and from `H` once it is read.
local function hdel(...)
  redis.call('HDEL', KEYS[1], ...)
  if H then
    for _, name in ipairs({ ... }) do
      H[name] = nil
    end
  end
end

-- A reply without the hash: nothing to relay, nothing recorded.
local function bare(outcome)
  return { outcome, '0', '0', '0' }
end

-- The trail from `from` on, as the reply carries it.
local function outbox_from(from)
  local out = {}
  for _, entry in ipairs(redis.call('XRANGE', KEYS[3], from, '+')) do
    local e = {}
    for i = 1, #entry[2], 2 do
      e[entry[2][i]] = entry[2][i + 1]
    end
    out[#out + 1] = { entry[1], e.type or '', e.attempt or '', e.at or '',
      e.by or '', e.reason or '' }
  end
  return out
end

-- Ends a step that read the hash: the outbox, then the hash as it is now.
local function reply(outcome, left_waiting)
  field('status')
  local out = { outcome, left_waiting and '1' or '0', '0', tostring(#OWN) }
  -- The earliest open relay, and whether any is not this step's.
  local from, others
  for name in pairs(H) do
    local id = string.match(name, '^relay:(.+)$')
    if id then
      if not OWN[1] or id ~= OWN[1][1] then
        others = true
      end
      if not from or id_before(id, from) then
        from = id
      end
    end
  end
  -- Most often the outbox is this step's own entries, which it holds.
  local outbox = OWN
  if others then
    outbox = outbox_from(from)
  end
  out[3] = tostring(#outbox)
  for _, entry in ipairs(outbox) do
    for _, value in ipairs(entry) do
      out[#out + 1] = value
    end
  end
  for name, value in pairs(H) do
    if name == 'image' then
      out[#out + 1] = 'has_image'
      out[#out + 1] = '1'
    elseif name ~= 'token' then
      out[#out + 1] = name
      out[#out + 1] = value
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
-- existing one already has it (the post that started it set it). Returns
-- the hash field that opens this step's relay, on its first entry, for the
-- caller to write with its own HSET, and writes its relay mark when the
-- step was given the relay index.
local function record(kind, now, by, reason)
  local attempt = field('attempt')
  local entry = { 'type', kind, 'attempt', attempt, 'at', now, 'by', by }
  if reason and reason ~= '' then
    entry[#entry + 1] = 'reason'
    entry[#entry + 1] = reason
  end
  -- Only a post starts a trail; any other step finds it, unless it went
  -- (a hand edit, an eviction), and then starts it again with the hash's
  -- lifetime.
  local id = kind ~= 'challenge' and redis.call('XADD', KEYS[3], 'NOMKSTREAM',
    'MAXLEN', TRAIL_LENGTH, '*', unpack(entry))
  if not id then
    id = redis.call('XADD', KEYS[3], 'MAXLEN', TRAIL_LENGTH, '*', unpack(entry))
    live_with_hash(KEYS[3])
  end
  OWN[#OWN + 1] = { id, kind, attempt, tostring(now), by, reason or '' }
  if #OWN == 1 then
    if KEYS[5] then
      -- The access is the hash's hash tag.
      redis.call('ZADD', KEYS[5], now, string.match(KEYS[1], '{(.+)}$') .. '|' .. id)
    end
    return 'relay:' .. id
  end
end

-- Records a new status and tells everyone who listens, with one HSET of
-- the status, the relay, the reason and any `extra` field, value pairs. A
-- token lives only while the status is token_received. The statuses that
-- end a wait are also pushed on the wake list, which lives exactly as long
-- as the hash.
local function move(status, now, by, reason, extra)
  local before = field('status')
  local fields = extra or {}
  fields[#fields + 1] = 'status'
  fields[#fields + 1] = status
  fields[#fields + 1] = 'updated_at'
  fields[#fields + 1] = now
  if reason and reason ~= '' then
    fields[#fields + 1] = 'reason'
    fields[#fields + 1] = reason
  end
  local relay = record(status, now, by, reason)
  if relay then
    fields[#fields + 1] = relay
    fields[#fields + 1] = ''
  end
  hset(fields)
  if before == 'token_received' then
    hdel('token')
  end
  if status == 'token_received' or status == 'expired' or status == 'cancelled' then
    redis.call('RPUSH', KEYS[2], status)
    live_with_hash(KEYS[2])
  end
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

-- Whether a caller limited to `customer` (a customer session) may see this
-- access; '' is a caller with no such limit. Checked in the step that
-- acts, so an access re-posted for another customer after the caller looked
-- is never touched, and before anything else, so an access the caller may
-- not see changes in no way (not even by expiring).
local function in_scope(customer)
  if customer == '' then
    return true
  end
  -- The one field first, so that another customer's access, which may hold
  -- a large image, answers as fast as an unknown one.
  if not H and redis.call('HGET', KEYS[1], 'customer') ~= customer then
    return false
  end
  return field('customer') == customer
end
