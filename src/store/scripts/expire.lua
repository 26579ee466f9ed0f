-- The sweeper's step for one entry of the expiring index, whose member is
-- `<access>|<started_at>`: one entry per posted challenge. Several gateways
-- may sweep the same entry at once: only the first finds it to expire.
-- ARGV[2]: the entry's started_at (ms)
-- ARGV[3]: how long a post may take between its index write and its hash
--          write (ms)
-- ARGV[4]: how long a token may wait in token_received for its report (ms)
-- The entry also watches a token waiting for its scraper's report: once
-- it has waited ARGV[4], the challenge expires (by the system), which
-- erases the token.
-- Replies 'done' when this call expired the challenge; 'waiting', with the
-- hash, when its deadline is still ahead by this node's clock (or the entry
-- is scored early); 'token_waiting', with the hash, when a token has not
-- waited its time yet; 'in_flight' when the post that wrote the entry may not
-- have written the hash yet; 'gone' when the entry is no longer needed (that
-- challenge ended, or was superseded), with the hash when there is one, so
-- that an outbox a dead gateway left is relayed before the entry goes: on a
-- cluster a read that expires a challenge writes no relay mark, and its
-- expiring entry, due already, stands in for one.
local now = now_ms()
local mine = tonumber(ARGV[2])
local started = tonumber(field('started_at'))
if started == nil then
  return bare(now - mine > tonumber(ARGV[3]) and 'gone' or 'in_flight')
end
if started < mine then
  if now - mine > tonumber(ARGV[3]) then
    return reply('gone', false)
  end
  return bare('in_flight')
end
if started > mine then
  return reply('gone', false)
end
local status, expired = current_status(now)
if expired then
  return reply('done', true)
end
if WAITING[status] then
  return reply('waiting', false)
end
if status == 'token_received' then
  if tonumber(field('updated_at')) + tonumber(ARGV[4]) > now then
    return reply('token_waiting', false)
  end
  move('expired', now, 'system')
  return reply('done', true)
end
return reply('gone', false)
