-- Lists a session under its customer, for revoking them all, and forgets
-- the ones that ended by themselves.
-- KEYS[1]: the customer's sessions  2fa:customer:{<customer>}:sessions
-- ARGV[1]: the session's digest
-- ARGV[2]: its end (Unix ms)
-- The index lives as long as its longest-lived session.
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. now_ms())
-- Empty only if this node's clock is past the new session's end already.
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if last[2] then
  redis.call('PEXPIREAT', KEYS[1], last[2])
end
