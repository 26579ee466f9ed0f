-- Moves an entry of the expiring index later, never earlier, and never adds
-- one: whoever removed it meanwhile had the last word. Replies 1 if moved.
-- KEYS[1]: the expiring index   ARGV[1]: member   ARGV[2]: new score (ms)
local current = redis.call('ZSCORE', KEYS[1], ARGV[1])
if current and tonumber(current) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
  return 1
end
return 0
