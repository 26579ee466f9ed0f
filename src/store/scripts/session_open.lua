-- A new customer session: its hash, named after the session's digest, with
-- its lifetime. The session string itself never reaches Redis.
-- KEYS[1]: the session       2fa:session:{<digest>}
-- ARGV[1]: the customer
-- ARGV[2]: its lifetime (ms)
-- Replies with its end, Unix ms by Redis's clock, which also runs its TTL.
local expires_at = now_ms() + tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'customer', ARGV[1], 'expires_at', expires_at)
redis.call('PEXPIREAT', KEYS[1], expires_at)
return expires_at
