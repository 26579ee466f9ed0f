-- The front end is shown this challenge: `need` becomes `question_sent`.
-- Replies 'stale' when the access is no longer waiting for this customer,
-- so the caller drops it from the customer's index.
-- ARGV[2]: the customer who lists
local now = now_ms()
local status, expired = current_status(now)
if not WAITING[status] or redis.call('HGET', KEYS[1], 'customer') ~= ARGV[2] then
  return reply('stale', expired, KEYS[1])
end
if status == 'need' then
  move('question_sent', now)
end
return reply('done', false, KEYS[1])
