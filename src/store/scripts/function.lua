-- Follows the shared helpers in the library: every function starts here.
-- A library is loaded once, so what the helpers keep per call (the step's
-- own trail entries, the hash it read, its lifetime) is cleared here rather
-- than by running the helpers' text anew, as an EVALSHA script did.
local function begin(keys, args)
  KEYS, ARGV = keys, args
  OWN, H, HASH_TTL = {}, nil, nil
end
