-- Changes an endpoint's fields, if the endpoint exists. A rotation keeps the
-- secret it replaces, and until when it still signs.
-- KEYS[1]: the endpoint   2fa:webhook:{<id>}
-- ARGV[1]: a new secret, or '' to keep it   ARGV[2]: until when the old one
--          still signs (ms)
-- ARGV[3], ...: field, value pairs to set; a value of '' deletes the field
-- Replies 1 when changed, 0 when there is no such endpoint.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
if ARGV[1] ~= '' then
  local old = redis.call('HGET', KEYS[1], 'secret')
  redis.call('HSET', KEYS[1], 'secret', ARGV[1],
    'previous_secret', old, 'previous_until', ARGV[2])
end
for i = 3, #ARGV, 2 do
  if ARGV[i + 1] == '' then
    redis.call('HDEL', KEYS[1], ARGV[i])
  else
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
return 1
