-- Ends a session, and tells the live feeds opened with it.
-- KEYS[1]: the session       2fa:session:{<digest>}
-- ARGV[1]: its channel       2fa:session:{<digest>}:ended
-- Replies 1 when it ended the session, 0 when it was already gone.
if redis.call('DEL', KEYS[1]) == 0 then
  return 0
end
redis.call(PUBLISH, ARGV[1], 'ended')
return 1
