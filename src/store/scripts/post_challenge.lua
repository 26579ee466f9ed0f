-- A new challenge: attempt n+1 in status `need`, whatever came before. The
-- indexes already point here (the gateway adds to them first), so a crash
-- leaves a stale index entry, never a missing one.
-- ARGV[2]: customer   ARGV[3]: fin_entity_name   ARGV[4]: question
-- ARGV[5]: kind       ARGV[6]: started_at (ms)   ARGV[7]: expires_at (ms)
-- ARGV[8]: retention after expiry (ms)
local attempt = tonumber(redis.call('HGET', KEYS[1], 'attempt') or '0') + 1
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('HSET', KEYS[1],
  'status', 'need',
  'customer', ARGV[2],
  'fin_entity_name', ARGV[3],
  'question', ARGV[4],
  'kind', ARGV[5],
  'attempt', attempt,
  'started_at', ARGV[6],
  'updated_at', ARGV[6],
  'expires_at', ARGV[7])
redis.call('PEXPIREAT', KEYS[1], tonumber(ARGV[7]) + tonumber(ARGV[8]))
redis.call('PUBLISH', ARGV[1], 'need')
return reply('done', false, KEYS[1])
