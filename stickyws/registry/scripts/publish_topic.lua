-- Publish to a topic: assign the next offset, keep it in the log, trim the log, announce it, in one step.
-- KEYS: 1 topic meta key, 2 topic log key.
-- ARGV: 1 payload (JSON text), 2 epoch if the topic is new, 3 retention count, 4 retention ms, 5 meta ttl s,
-- 6 topic, 7 topic channel, 8 'PUBLISH' (one primary) or 'SPUBLISH' (cluster: the channel is in the topic's
-- slot). The body is stickyws.registry.wire.publication_body's.
-- Returns {offset, epoch}.
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[2]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'offset', 0)
end
local offset = redis.call('HINCRBY', KEYS[1], 'offset', 1)
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[3], '*', 'o', offset, 'd', ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cutoff = now - tonumber(ARGV[4])
if cutoff > 0 then redis.call('XTRIM', KEYS[2], 'MINID', string.format('%d', cutoff)) end
redis.call('PEXPIRE', KEYS[2], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call(ARGV[8], ARGV[7], '{"t":' .. cjson.encode(ARGV[6]) .. ',"o":' .. string.format('%d', offset) ..
           ',"e":' .. cjson.encode(epoch) .. ',"ts":' .. string.format('%d', now) .. ',"d":' .. ARGV[1] .. '}')
return {offset, epoch}
