-- Reads a customer's live feed after a given entry, or says it cannot: some
-- entries after it were removed (max-deleted-entry-id is past it, as every
-- removal is an XDEL), the feed is gone altogether, or the position is not
-- one this feed gave out. The reader then starts over from what is waiting
-- now.
-- KEYS[1]: the feed   ARGV[1]: the last entry id the reader has, or '0-0'
-- ARGV[2]: how many entries at most (0 for the head alone)
-- Replies { 'gap', head } or { 'ok', head, id, event, access, status,
-- attempt, at, id, ... }, where head is the id a reader that has everything
-- so far resumes from.
local after = ARGV[1]
local head = '0-0'
local removed = '0-0'
local exists = redis.call('EXISTS', KEYS[1]) == 1
if exists then
  local info = redis.call('XINFO', 'STREAM', KEYS[1])
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then
      head = info[i + 1]
    elseif info[i] == 'max-deleted-entry-id' then
      removed = info[i + 1]
    end
  end
end
local gone = not exists and after ~= '0-0'
if gone or id_before(after, removed) or id_before(head, after) then
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
