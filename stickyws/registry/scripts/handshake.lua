-- Claim a user's route and open (or resume) the session, in one step. Needs outbox.lua in front.
-- KEYS: 1 route key, 2 session key.
-- ARGV: 1 server, 2 routing ttl, 3 reject(0|1), 4 owner the caller found gone ('' none), 5 session id,
-- 6 resume(0|1), 7 session ttl, 8 replay after this seq ('' none), 9 outbox max messages, 10 outbox max bytes.
-- Returns {1, previous|false, resumed, lastClientId, lastServerSeq, subs, outFirst, seq1, payload1, ...}
-- or {0, owner} (another server owns the user under reject: the caller checks that owner's heartbeat).
local prev = redis.call('GET', KEYS[1])
if prev and prev ~= ARGV[1] and ARGV[3] == '1' and prev ~= ARGV[4] then return {0, prev} end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
local sid = redis.call('HGET', KEYS[2], 'sid')
local resumed = 0
if ARGV[6] == '1' and sid == ARGV[5] then
  resumed = 1
else
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[2], 'sid', ARGV[5], 'lastClientId', 0, 'lastServerSeq', 0, 'subs', '[]',
             'outFirst', 1, 'outBytes', 0, 'outMax', ARGV[9], 'outMaxBytes', ARGV[10])
end
redis.call('EXPIRE', KEYS[2], ARGV[7])
local f = redis.call('HMGET', KEYS[2], 'lastClientId', 'lastServerSeq', 'subs', 'outFirst')
local last_seq = tonumber(f[2]) or 0
local first = tonumber(f[4]) or (last_seq + 1)
local reply = {1, prev, resumed, tonumber(f[1]) or 0, last_seq, f[3] or '[]', first}
if ARGV[8] ~= '' then read_outbox(KEYS[2], math.max(first, tonumber(ARGV[8]) + 1), last_seq, reply) end
return reply
