-- Shared by the feed and access functions: stream ids, `<ms>-<seq>`, compared as
-- numbers.
local function parse_id(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end

-- An id that does not parse counts as before anything, so a reader holding
-- one starts over rather than failing.
local function id_before(a, b)
  local am, as = parse_id(a)
  local bm, bs = parse_id(b)
  if not (am and bm) then
    return true
  end
  return am < bm or (am == bm and as < bs)
end
