-- Shared by every function. The clock is Redis's own (TIME), so gateway
-- instances whose clocks disagree still agree on when a challenge expires.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
