-- The entries of the expiring index whose deadline has passed, by Redis's
-- clock, oldest first, as member and score pairs.
-- KEYS[1]: the expiring index   ARGV[1]: how many at most
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms(), 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[1]))
