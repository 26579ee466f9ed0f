-- Adds an endpoint to the registry of webhook endpoints, unless it is full.
-- KEYS[1]: the registry   2fa:webhooks
-- ARGV[1]: the endpoint id   ARGV[2]: created at (ms)   ARGV[3]: the most
--          endpoints allowed
-- Replies 1 when added, 0 when the registry is full.
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
return 1
