-- Push one message to a user: append it to the session's outbox with the next seq and announce it.
-- Needs outbox.lua in front.
-- KEYS: 1 session key, 2 route key, 3 the push's idempotency key (read only when ARGV 6 is '1').
-- ARGV: 1 payload (JSON text), 2 user id, 3 push channel prefix, 4 suffix, 5 the user's sharded channel ('' on
-- one primary), 6 '1' when the push has an idempotency key, 7 replicas the caller waits for (0: none).
-- Appends the payload with the next seq (or finds the seq its key already got), trims by the limits stored
-- with the session, and announces it: on one primary on the owning server's push channel, on a cluster with
-- SPUBLISH on the user's own channel (same slot). The body is stickyws.registry.wire.push_body's. When the
-- caller waits for replicas, the announcement is left to it (after WAIT): it is made only once a replica holds
-- the push. A duplicate then writes the session id again (same value), so the caller's WAIT on this connection
-- also covers the first push with that key, made perhaps on another.
-- Returns {1, seq, session id, owner|false, duplicate, body|'', channel|''} or {0} (no session).
local f = redis.call('HMGET', KEYS[1], 'sid', 'lastServerSeq', 'outFirst', 'outBytes', 'outMax', 'outMaxBytes')
if not f[1] then return {0} end
local seq, dup = nil, 0
if ARGV[6] == '1' then
  local used = redis.call('GET', KEYS[3])
  if used then seq, dup = tonumber(used), 1 end
  if dup == 1 and tonumber(ARGV[7]) > 0 then redis.call('HSET', KEYS[1], 'sid', f[1]) end
end
if not seq then
  seq = (tonumber(f[2]) or 0) + 1
  local first = tonumber(f[3]) or seq
  local bytes = (tonumber(f[4]) or 0) + #ARGV[1]
  redis.call('HSET', KEYS[1], 'm:' .. string.format('%d', seq), ARGV[1])
  first, bytes = trim_outbox(KEYS[1], first, seq, bytes, tonumber(f[5]) or 1000, tonumber(f[6]) or 1048576)
  redis.call('HSET', KEYS[1], 'lastServerSeq', seq, 'outFirst', first, 'outBytes', bytes)
  if ARGV[6] == '1' then
    local ttl = redis.call('TTL', KEYS[1])
    if ttl < 1 then ttl = 60 end
    redis.call('SET', KEYS[3], seq, 'EX', ttl)
  end
end
local owner = redis.call('GET', KEYS[2])
if not owner and ARGV[5] == '' then return {1, seq, f[1], false, dup, '', ''} end
local t = redis.call('TIME')
local ms = string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
local body = '{"u":' .. cjson.encode(ARGV[2]) .. ',"s":' .. cjson.encode(f[1]) .. ',"q":' ..
             string.format('%d', seq) .. ',"ts":' .. ms .. ',"d":' .. ARGV[1] .. '}'
local channel = ARGV[5]
if channel == '' then channel = ARGV[3] .. owner .. ARGV[4] end
if tonumber(ARGV[7]) > 0 then return {1, seq, f[1], owner, dup, body, channel} end
if ARGV[5] ~= '' then redis.call('SPUBLISH', channel, body) else redis.call('PUBLISH', channel, body) end
return {1, seq, f[1], owner, dup, '', ''}
