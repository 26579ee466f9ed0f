-- Prepended to every script that moves one access. Each script takes
--   KEYS[1]: the access hash   2fa:access:{<access>}
--   KEYS[2]: its wake list     2fa:access:{<access>}:wake
--   KEYS[3]: its audit trail   2fa:access:{<access>}:events
--   KEYS[4]: its submissions   2fa:access:{<access>}:submissions (submit_token)
--   ARGV[1]: its channel       2fa:access:{<access>}:changed
-- and replies { outcome, left_waiting ('1' or '0'), field, value, ... }: the
-- hash as it is after the step, never with its token, and with the image
-- replaced by has_image = '1' (only GET sends the image). When the step
-- recorded events, `moves` lists them as `type@audit-id`, comma-separated,
-- so the gateway can pass them on to the customer's live feed in order.

local WAITING = { need = true, question_sent = true }

-- The events this step recorded, in order, as `type@audit-id`.
local MOVES = {}

-- How many events an access's audit trail keeps.
local TRAIL_LENGTH = 100

local function reply(outcome, left_waiting, hash)
  local out = { outcome, left_waiting and '1' or '0' }
  if #MOVES > 0 then
    out[#out + 1] = 'moves'
    out[#out + 1] = table.concat(MOVES, ',')
  end
  local fields = redis.call('HGETALL', hash)
  for i = 1, #fields, 2 do
    if fields[i] == 'image' then
      out[#out + 1] = 'has_image'
      out[#out + 1] = '1'
    elseif fields[i] ~= 'token' then
      out[#out + 1] = fields[i]
      out[#out + 1] = fields[i + 1]
    end
  end
  return out
end

-- Keeps a key exactly as long as the access hash.
local function live_with_hash(key)
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl > 0 then
    redis.call('PEXPIRE', key, ttl)
  end
end

-- Appends to the audit trail. It records who did what and when, never a
-- token.
local function record(kind, now, by, reason)
  local attempt = redis.call('HGET', KEYS[1], 'attempt')
  local id
  if reason and reason ~= '' then
    id = redis.call('XADD', KEYS[3], 'MAXLEN', TRAIL_LENGTH, '*',
      'type', kind, 'attempt', attempt, 'at', now, 'by', by, 'reason', reason)
  else
    id = redis.call('XADD', KEYS[3], 'MAXLEN', TRAIL_LENGTH, '*',
      'type', kind, 'attempt', attempt, 'at', now, 'by', by)
  end
  MOVES[#MOVES + 1] = kind .. '@' .. id
  live_with_hash(KEYS[3])
end

-- Records a new status and tells everyone who listens. A token lives only
-- while the status is token_received. The statuses that end a wait are also
-- pushed on the wake list, which lives exactly as long as the hash.
local function move(status, now, by, reason)
  redis.call('HSET', KEYS[1], 'status', status, 'updated_at', now)
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
  local status = redis.call('HGET', KEYS[1], 'status')
  if WAITING[status] and tonumber(redis.call('HGET', KEYS[1], 'expires_at')) <= now then
    move('expired', now, 'system')
    return 'expired', true
  end
  return status, false
end
