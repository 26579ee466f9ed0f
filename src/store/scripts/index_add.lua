-- Adds an access to an index ZSET: a customer's pending set, or the expiring
-- set. The gateway calls it before the hash write the entry points to.
-- KEYS[1]: the index
-- ARGV[1]: access id   ARGV[2]: score in ms, or '' for Redis's clock now
-- ARGV[3]: keep the index at least this many ms, or '' to leave its TTL
-- Replies the score used. A score equal to the entry's current one is moved
-- on by 1 ms: whoever cleans up holds the (member, score) pair it saw, and
-- removes only that pair, so a cleaner late from an earlier attempt can
-- never remove the entry of a newer one.
local score = tonumber(ARGV[2])
if ARGV[2] == '' then
  score = now_ms()
end
local old = redis.call('ZSCORE', KEYS[1], ARGV[1])
if old and tonumber(old) == score then
  score = score + 1
end
redis.call('ZADD', KEYS[1], score, ARGV[1])
if ARGV[3] ~= '' and redis.call('PTTL', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return score
