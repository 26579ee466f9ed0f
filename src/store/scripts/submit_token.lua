-- The customer's token arrives: a waiting challenge becomes token_received,
-- in one round trip when the challenge has no rule for the gateway to check.
-- KEYS[4]: the access's submission count  2fa:access:{<access>}:submitted
-- ARGV[2]: token
-- ARGV[3]: the attempt the customer answered, or '' for any
-- ARGV[4]: the started_at of the challenge whose rule the gateway checked
--          the token against, or '' when it has checked none (started_at
--          only ever grows, unlike attempt, which starts over once a hash
--          has expired)
-- ARGV[5]: submissions allowed per window, or '' not to count this call (a
--          second call within one request)
-- ARGV[6]: the window (ms)
-- ARGV[7]: the customer a session limits the caller to, or ''
-- Every submission to an existing access counts, whatever becomes of it, so
-- a compromised front end cannot try codes at speed. The count is a fixed
-- window that starts with the first submission: a SET NX with the window's
-- lifetime, then an INCR for every later one. Replies 'throttled'
-- with retry_after_ms; 'check_rule' when the challenge has a rule (choices,
-- a validation, or no token at all) the gateway has not checked; and
-- 'rule_changed' when a new challenge was posted since that check. Both
-- carry the hash, whose rule the gateway checks before it calls again.
if not field('status') or not in_scope(ARGV[7]) then
  return bare('not_found')
end
local now = now_ms()
if ARGV[5] ~= '' then
  -- The first submission of a window starts it with one SET.
  local count = 1
  if not redis.call('SET', KEYS[4], 1, 'PX', ARGV[6], 'NX') then
    count = redis.call('INCR', KEYS[4])
  end
  if count > tonumber(ARGV[5]) then
    local wait = redis.call('PTTL', KEYS[4])
    if wait < 0 then
      -- A count without a lifetime (a hand edit) would block for good.
      redis.call('PEXPIRE', KEYS[4], ARGV[6])
      wait = tonumber(ARGV[6])
    end
    return { 'throttled', '0', '0', '0', 'retry_after_ms', tostring(wait) }
  end
end
local status, expired = current_status(now)
local attempt = field('attempt')
if ARGV[3] ~= '' and attempt ~= ARGV[3] then
  return reply('attempt_mismatch', expired)
end
if not WAITING[status] then
  return reply('refused', expired)
end
if ARGV[4] == '' then
  local kind = field('kind')
  if kind == 'choice' or kind == 'decoupled' or field('validation') then
    return reply('check_rule', false)
  end
elseif field('started_at') ~= ARGV[4] then
  return reply('rule_changed', false)
end
move('token_received', now, 'frontend', nil, { 'token', ARGV[2] })
return reply('done', true)
