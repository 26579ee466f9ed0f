-- Removes an index entry only if it is still the one the caller saw.
-- KEYS[1]: a pending index   ARGV[1]: access id   ARGV[2]: the score the caller saw
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) == tonumber(ARGV[2]) then
  return redis.call('ZREM', KEYS[1], ARGV[1])
end
return 0
