-- Read a topic's publications after a position.
-- KEYS: 1 topic meta key, 2 topic log key. ARGV: 1 offset, 2 epoch, 3 limit.
-- Returns {epoch, offset now, o1, d1, o2, d2, ...}: the entries after ARGV offset, oldest first, read only
-- when the epoch matches and at most ``limit`` are missing (the caller judges completeness).
local m = redis.call('HMGET', KEYS[1], 'epoch', 'offset')
if not m[1] then return {'', 0} end
local cur = tonumber(m[2]) or 0
local off = tonumber(ARGV[1])
local reply = {m[1], cur}
local n = cur - off
if n > 0 and n <= tonumber(ARGV[3]) and (ARGV[2] == m[1] or (off == 0 and ARGV[2] == '')) then
  local entries = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', n)
  for i = #entries, 1, -1 do
    local fields = entries[i][2]
    reply[#reply + 1] = fields[2]
    reply[#reply + 1] = fields[4]
  end
end
return reply
