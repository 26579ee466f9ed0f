-- Reads a customer's live feed after a given entry, or says it cannot: the
-- entries after it may have been removed (by count, which moves
-- max-deleted-entry-id, or by age, which ids tell), and then the reader
-- starts over from what is waiting now.
-- KEYS[1]: the feed   ARGV[1]: the last entry id the reader has, or '0-0'
-- ARGV[2]: how many entries at most (0 for the head alone)
-- ARGV[3]: how long the feed keeps (ms)
-- Replies { 'gap', head } or { 'ok', head, id, event, access, status,
-- attempt, at, id, ... }, where head is the id a reader that has everything
-- so far resumes from.
local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end

local function before(a, b)
  local am, as = parse(a)
  local bm, bs = parse(b)
  return am < bm or (am == bm and as < bs)
end

local after = ARGV[1]
local head = '0-0'
local trimmed = '0-0'
if redis.call('EXISTS', KEYS[1]) == 1 then
  local info = redis.call('XINFO', 'STREAM', KEYS[1])
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then
      head = info[i + 1]
    elseif info[i] == 'max-deleted-entry-id' then
      trimmed = info[i + 1]
    end
  end
end
local too_old = after ~= '0-0' and parse(after) < now_ms() - tonumber(ARGV[3])
if too_old or before(after, trimmed) then
  return { 'gap', head }
end
local out = { 'ok', head }
if ARGV[2] == '0' then
  return out
end
local entries = redis.call('XRANGE', KEYS[1], '(' .. after, '+', 'COUNT', tonumber(ARGV[2]))
for _, entry in ipairs(entries) do
  local fields = {}
  for i = 1, #entry[2], 2 do
    fields[entry[2][i]] = entry[2][i + 1]
  end
  out[#out + 1] = entry[1]
  for _, name in ipairs({ 'event', 'access', 'status', 'attempt', 'at' }) do
    out[#out + 1] = fields[name] or ''
  end
end
return out
