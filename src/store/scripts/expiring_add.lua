-- Adds a posted challenge's entry to the expiring index, before its hash is
-- written. Should two posts ever share a member (one access, one
-- started_at), the entry keeps the earlier deadline: early is safe, as the
-- sweep then moves it on to the hash's own.
-- KEYS[1]: the expiring index   ARGV[1]: member   ARGV[2]: deadline (ms)
local current = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not current or tonumber(current) > tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
end
return 0
