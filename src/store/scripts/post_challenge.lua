-- A new challenge: attempt n+1 in status `need`, whatever came before. The
-- indexes already point here (the gateway adds to them first), so a crash
-- leaves a stale index entry, never a missing one. The audit trail goes on
-- across attempts.
-- ARGV[2]: customer   ARGV[3]: fin_entity_name   ARGV[4]: question
-- ARGV[5]: kind       ARGV[6]: started_at (ms)   ARGV[7]: expires_at (ms)
-- ARGV[8]: retention after expiry (ms)
-- ARGV[9]: how long a post may take from its first index write to here (ms)
-- ARGV[10], ARGV[11], ...: optional field, value pairs (choices, image,
--          validation, validation_message, instructions)
-- Replies 'superseded' with the hash, writing nothing, when a newer post
-- already wrote the hash, or when this post is so late that readers may
-- have dropped its index entries as stale: the gateway then posts again with
-- fresh entries, started after the hash's. So started_at only ever grows,
-- which is what the index readers rely on.
local mine = tonumber(ARGV[6])
local started = tonumber(field('started_at'))
if (started and started >= mine) or now_ms() - mine > tonumber(ARGV[9]) then
  return reply('superseded', false)
end
local attempt = tonumber(field('attempt') or '0') + 1
-- The first attempt of this customer's: a customer session reads the trail
-- from there on, never an earlier customer's moves.
local since = field('customer_since')
if field('customer') ~= ARGV[2] or not since then
  since = tostring(attempt)
end
-- The hash is overwritten rather than deleted, so that what the attempt
-- before left unrelayed (its `relay:` fields) goes out with this one; the
-- fields only some challenges or statuses have go first (the optional
-- fields of `hash.rs`), with the pointer an earlier build of the outbox kept.
hdel('choices', 'image', 'validation', 'validation_message', 'instructions',
  'token', 'reason', 'relay_from')
redis.call('DEL', KEYS[2])
local fields = {
  'status', 'need',
  'customer', ARGV[2],
  'fin_entity_name', ARGV[3],
  'question', ARGV[4],
  'kind', ARGV[5],
  'attempt', tostring(attempt),
  'customer_since', since,
  'started_at', ARGV[6],
  'updated_at', ARGV[6],
  'expires_at', ARGV[7],
}
for i = 10, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
hset(fields)
redis.call('PEXPIREAT', KEYS[1], tonumber(ARGV[7]) + tonumber(ARGV[8]))
hset({ record('challenge', ARGV[6], 'scraper'), '' })
redis.call(PUBLISH, ARGV[1], 'need')
return reply('done', false)
