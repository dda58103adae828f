-- Commit one client message: dedup by message id and apply its outputs and topic op, in one step.
-- Needs outbox.lua in front.
-- KEYS: 1 session key, 2 route key.
-- ARGV: what stays the same for a session first (packed once, see redis_store._commit_head): 1 session id,
-- 2 session ttl, 3 server, 4 routing ttl, 5 outbox max messages, 6 outbox max bytes; then 7 msg id, 8 topic op,
-- 9 topic, 10 payloads (JSON array of JSON texts), and the caller's mirror: 11 lastClientId, 12 lastServerSeq
-- (the floor of what is assigned), and, used only when the hash is gone (e.g. after a Redis restart),
-- 13 subs ('' none), 14 outbox (JSON).
-- Returns {duplicate, firstSeq, lastClientId, lastServerSeq, subs, outFirst}, {3} (the hash is gone: send the
-- mirror) or {4} (the user's session is another one now).
local sid = redis.call('HGET', KEYS[1], 'sid')
if not sid then
  if ARGV[13] == '' then return {3} end
  redis.call('HSET', KEYS[1], 'sid', ARGV[1], 'lastClientId', ARGV[11], 'lastServerSeq', ARGV[12],
             'subs', ARGV[13], 'outMax', ARGV[5], 'outMaxBytes', ARGV[6])
  local first, bytes = write_outbox(KEYS[1], ARGV[14])
  redis.call('HSET', KEYS[1], 'outFirst', first or (tonumber(ARGV[12]) + 1), 'outBytes', bytes)
elseif sid ~= ARGV[1] then
  return {4}
end
local f = redis.call('HMGET', KEYS[1], 'lastClientId', 'lastServerSeq', 'subs', 'outFirst', 'outBytes')
-- The caller's mirror holds what this registry acknowledged to it: never number below it (a failover can
-- lose the newest writes of a primary whose replica had not received them yet).
local last = math.max(tonumber(f[1]) or 0, tonumber(ARGV[11]) or 0)
local seq = math.max(tonumber(f[2]) or 0, tonumber(ARGV[12]) or 0)
local subs = f[3] or '[]'
local id = tonumber(ARGV[7])
redis.call('EXPIRE', KEYS[1], ARGV[2])
if id <= last then return {1, seq + 1, last, seq, subs, tonumber(f[4]) or (seq + 1)} end
if ARGV[8] ~= '' then
  local set = {}
  for _, t in ipairs(cjson.decode(subs)) do set[t] = true end
  if ARGV[8] == 'add' then set[ARGV[9]] = true else set[ARGV[9]] = nil end
  local list = {}
  for t, _ in pairs(set) do list[#list + 1] = t end
  table.sort(list)
  if #list == 0 then subs = '[]' else subs = cjson.encode(list) end
end
local payloads = cjson.decode(ARGV[10])
local newseq = seq + #payloads
local first = tonumber(f[4]) or (seq + 1)
local bytes = tonumber(f[5]) or 0
for i, p in ipairs(payloads) do
  redis.call('HSET', KEYS[1], 'm:' .. string.format('%d', seq + i), p)
  bytes = bytes + #p
end
first, bytes = trim_outbox(KEYS[1], first, newseq, bytes, tonumber(ARGV[5]), tonumber(ARGV[6]))
redis.call('HSET', KEYS[1], 'lastClientId', id, 'lastServerSeq', newseq, 'subs', subs, 'outFirst', first,
           'outBytes', bytes)
if redis.call('GET', KEYS[2]) == ARGV[3] then redis.call('EXPIRE', KEYS[2], ARGV[4]) end
return {0, seq + 1, id, newseq, subs, first}
