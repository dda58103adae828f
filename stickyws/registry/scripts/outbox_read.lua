-- Read kept messages of a session (a catch-up read). Needs outbox.lua in front.
-- KEYS: 1 session key. ARGV: 1 session id, 2 first seq, 3 last seq, 4 '1' when the caller waits for replicas.
-- Returns {lastServerSeq, seq1, payload1, ...} (the kept messages of the range) or {} (the session is another
-- one, or gone). When the caller waits for replicas and a message was found, the script writes the session id
-- again (same value): a propagated write, so a WAIT on the same connection then confirms that the replicas
-- hold everything this read returned (replication is one ordered stream).
local f = redis.call('HMGET', KEYS[1], 'sid', 'lastServerSeq', 'outFirst')
if f[1] ~= ARGV[1] then return {} end
local last = tonumber(f[2]) or 0
local reply = {last}
read_outbox(KEYS[1], math.max(tonumber(ARGV[2]), tonumber(f[3]) or 1), math.min(tonumber(ARGV[3]), last), reply)
if ARGV[4] == '1' and #reply > 1 then redis.call('HSET', KEYS[1], 'sid', ARGV[1]) end
return reply
