-- Adds an access to a customer's pending index, scored by Redis's clock now.
-- The gateway calls it before the hash write the entry points to, and
-- passes the score on as the challenge's started_at.
-- KEYS[1]: the pending index
-- ARGV[1]: access id   ARGV[2]: keep the index at least this many ms
-- ARGV[3]: the lowest score to use (ms): above the started_at of a post that
--          overtook this one, or 0
-- Replies the score used, always above the entry's current one: whoever
-- cleans up holds the (member, score) pair it saw, and removes only that
-- pair, so a cleaner late from an earlier post can never remove the entry
-- of a newer one.
local score = math.max(now_ms(), tonumber(ARGV[3]))
local old = redis.call('ZSCORE', KEYS[1], ARGV[1])
if old and tonumber(old) >= score then
  score = tonumber(old) + 1
end
redis.call('ZADD', KEYS[1], score, ARGV[1])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return score
