-- Adds an access to a customer's pending index, scored by Redis's clock now.
-- The gateway calls it before the hash write the entry points to, and
-- passes the score on as the challenge's started_at.
-- KEYS[1]: the pending index
-- ARGV[1]: access id   ARGV[2]: keep the index at least this many ms
-- Replies the score used. A score equal to the entry's current one is moved
-- on by 1 ms: whoever cleans up holds the (member, score) pair it saw, and
-- removes only that pair, so a cleaner late from an earlier post can never
-- remove the entry of a newer one.
local score = now_ms()
local old = redis.call('ZSCORE', KEYS[1], ARGV[1])
if old and tonumber(old) == score then
  score = score + 1
end
redis.call('ZADD', KEYS[1], score, ARGV[1])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return score
