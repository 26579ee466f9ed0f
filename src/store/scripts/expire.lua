-- The sweeper's step for one due access. Several gateways may sweep the same
-- access at once: only the first finds it waiting and past its deadline.
-- Replies 'done' when this call expired it, 'waiting' when its deadline is
-- still ahead (by this node's clock), and 'gone' when it has left waiting.
local now = now_ms()
local status, expired = current_status(now)
if expired then
  return reply('done', true, KEYS[1])
end
if WAITING[status] then
  return { 'waiting', '0' }
end
return { 'gone', '0' }
