-- Outbox helpers, put in front of the scripts that use them when they are loaded
-- (stickyws/registry/scripts/__init__.py).
--
-- A session hash (ws:{u:<user>}:session) holds sid, lastClientId, lastServerSeq, subs (JSON array), the
-- outbox limits outMax and outMaxBytes, and the outbox as one field per message, m:<seq> -> payload JSON
-- text, for seqs outFirst..lastServerSeq, with outBytes their total size. Appending and trimming touch only
-- the fields that change, so a commit costs the same whatever the outbox holds.

-- Writes entries_json ([[seq, payload], ...]) into the hash at key; returns the first seq written (nil: none)
-- and the payloads' bytes.
local function write_outbox(key, entries_json)
  local entries = cjson.decode(entries_json)
  local first, bytes = nil, 0
  for _, e in ipairs(entries) do
    redis.call('HSET', key, 'm:' .. string.format('%d', e[1]), e[2])
    if first == nil then first = e[1] end
    bytes = bytes + #e[2]
  end
  return first, bytes
end

-- The outbox rule (stickyws.registry.records.extend_outbox): with messages first..last kept in the hash at
-- key (bytes in all), drop the oldest while more than limit messages or more than maxb bytes are kept, the
-- newest always staying. Returns the new first seq and bytes.
local function trim_outbox(key, first, last, bytes, limit, maxb)
  while (last - first + 1) > limit or (bytes > maxb and first < last) do
    bytes = bytes - redis.call('HSTRLEN', key, 'm:' .. string.format('%d', first))
    redis.call('HDEL', key, 'm:' .. string.format('%d', first))
    first = first + 1
  end
  return first, bytes
end

-- Appends seq and payload of each message first..last the hash at key keeps to reply (a missing one is skipped).
local function read_outbox(key, first, last, reply)
  for s = first, last do
    local p = redis.call('HGET', key, 'm:' .. string.format('%d', s))
    if p then
      reply[#reply + 1] = s
      reply[#reply + 1] = p
    end
  end
end
