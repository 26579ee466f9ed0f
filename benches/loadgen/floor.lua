-- The floor of a token submission: only the writes that storing a token
-- cannot do without, in one script, to compare the gateway's Redis work
-- with (table 3b). No check, no clock, no expiry, no reply. The hash and
-- the audit trail exist already, as a posted challenge's do.
-- KEYS[1]: the access hash   2fa:access:{floor-<i>}
-- KEYS[2]: its wake list     2fa:access:{floor-<i>}:wake
-- KEYS[3]: its audit trail   2fa:access:{floor-<i>}:events
-- ARGV[1]: its channel       2fa:access:{floor-<i>}:changed
-- ARGV[2]: the token
redis.call('HSET', KEYS[1], 'status', 'token_received', 'token', ARGV[2])
redis.call('RPUSH', KEYS[2], 'token_received')
redis.call('PUBLISH', ARGV[1], 'token_received')
redis.call('XADD', KEYS[3], '*', 'type', 'token_received', 'attempt', '1', 'by', 'frontend')
