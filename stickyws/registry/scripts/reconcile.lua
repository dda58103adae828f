-- Re-register a server's route and session after the registry came back. Needs outbox.lua in front.
-- KEYS: 1 route key, 2 session key.
-- ARGV: 1 server, 2 routing ttl, 3 session id, 4 lastClientId, 5 lastServerSeq, 6 subs, 7 session ttl,
-- 8 outbox (JSON), 9 outbox max messages, 10 outbox max bytes, 11 the last seq the registry had confirmed to
-- the mirror (-1 unknown). When the mirror is ahead (it numbered replies while the registry was unreachable),
-- it is written; messages the registry numbered after ARGV 11 meanwhile (pushes) are kept, renumbered after
-- the mirror's last seq, so no seq means two messages.
-- Returns 1 (re-registered) or 0 (another server owns the user now).
local owner = redis.call('GET', KEYS[1])
if owner and owner ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
local f = redis.call('HMGET', KEYS[2], 'sid', 'lastClientId')
if not f[1] or (f[1] == ARGV[3] and (tonumber(f[2]) or -1) < tonumber(ARGV[4])) then
  local moved = {}
  local base = tonumber(ARGV[11]) or -1
  if not f[1] then
    redis.call('HSET', KEYS[2], 'outMax', ARGV[9], 'outMaxBytes', ARGV[10])
  elseif base >= 0 then
    local reg_last = tonumber(redis.call('HGET', KEYS[2], 'lastServerSeq')) or 0
    for s = base + 1, reg_last do
      local p = redis.call('HGET', KEYS[2], 'm:' .. string.format('%d', s))
      if p then moved[#moved + 1] = p end
    end
  end
  redis.call('HSET', KEYS[2], 'sid', ARGV[3], 'lastClientId', ARGV[4], 'lastServerSeq', ARGV[5], 'subs', ARGV[6])
  local first, bytes = write_outbox(KEYS[2], ARGV[8])
  local last = tonumber(ARGV[5])
  for _, p in ipairs(moved) do
    last = last + 1
    redis.call('HSET', KEYS[2], 'm:' .. string.format('%d', last), p)
    bytes = bytes + #p
    first = first or last
  end
  redis.call('HSET', KEYS[2], 'lastServerSeq', last, 'outFirst', first or (last + 1), 'outBytes', bytes)
end
redis.call('EXPIRE', KEYS[2], ARGV[7])
return 1
