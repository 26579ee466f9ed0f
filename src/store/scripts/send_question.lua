-- The front end is shown this challenge: `need` becomes `question_sent`.
-- ARGV[2]: the customer who lists
-- ARGV[3]: the entry's score in the customer's pending index (ms)
-- ARGV[4]: how long a post may take between its index write and its hash
--          write (ms)
-- ARGV[5]: the attempt to show, or '' for the current one: the live feed
--          shows an attempt only for its own `challenge` event
-- Replies 'done' when listed. Otherwise the entry is not waiting for this
-- customer, and the reply says whether the caller may drop it: 'stale'
-- when the hash holds this entry's attempt or a later one, or when the
-- entry is too old to belong to a post still in flight; 'skip' when a post
-- may be between its index write and its hash write.
local now = now_ms()
local status, expired = current_status(now)
local this_attempt = ARGV[5] == '' or field('attempt') == ARGV[5]
if WAITING[status] and field('customer') == ARGV[2] and this_attempt then
  if status == 'need' then
    move('question_sent', now, 'frontend')
  end
  return reply('done', false)
end
local score = tonumber(ARGV[3])
local started = tonumber(field('started_at'))
if (started and started >= score) or now - score > tonumber(ARGV[4]) then
  return reply('stale', expired)
end
return reply('skip', expired)
