"""The registry on Redis: Lua scripts keep every decision to one round trip.

Contracts are those of :class:`stickyws.server.registry.Registry`. Connection handling:

* the scripts go over :mod:`stickyws.server.redis_lane` (one auto-pipelined connection on one
  primary) or :mod:`stickyws.server.cluster_lanes` (one per primary of a cluster): ``EVALSHA``,
  ``EVAL`` again after a restart flushed the script cache, the commits of one loop iteration in one
  socket write per node;
* pub/sub on a connection of its own (:class:`~stickyws.server.redis_lane.RedisSubscriber`), or
  sharded on a cluster (:mod:`stickyws.server.cluster_listener`);
* the rest (heartbeats, drain notices, reads in bulk) through redis-py: a
  :class:`redis.asyncio.BlockingConnectionPool` of :data:`POOL_SIZE` connections, where a burst waits
  for a free connection (up to :data:`POOL_TIMEOUT_S`) instead of failing, which redis-py 8.1's plain
  pool does past its limit with ``MaxConnectionsError``;
* short timeouts and no client-side retries, so an outage turns into :class:`RegistryUnavailable`
  within about a second and the server applies its policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.credentials import CredentialProvider

from stickyws import json_codec, keys
from stickyws.server.cluster_lanes import ClusterLanes
from stickyws.server.cluster_listener import ClusterListener
from stickyws.server.redis_lane import LaneScript, RedisLane, RedisSubscriber, pack_command
from stickyws.server.registry import (
    ClaimResult,
    MessageCallback,
    NotYetReplicated,
    OutboxRead,
    Publication,
    PushResult,
    RegistryUnavailable,
    SessionReplaced,
    SubscribedCallback,
    TopicHistory,
    TopicPosition,
    heartbeat_is_live,
    history_after,
    topic_meta_ttl_s,
)
from stickyws.server.session import (
    DEFAULT_OUTBOX_LIMITS,
    Commit,
    CommitResult,
    OutboxEntry,
    OutboxLimits,
    SessionRecord,
    extend_outbox,
)

#: Connections in the pool (the settings model has no field for it yet).
POOL_SIZE = 64
#: How long a call waits for a free pooled connection.
POOL_TIMEOUT_S = 2.0
SOCKET_TIMEOUT_S = 2.0
CONNECT_TIMEOUT_S = 1.0
#: Replicas a commit or a push waits for before it is acknowledged (settings ``ack_wait_replicas``), at
#: most as many as the primary has; and how long (``ack_wait_timeout_ms``).
ACK_WAIT_REPLICAS = 1
ACK_WAIT_TIMEOUT_MS = 1000
#: Pause between pub/sub resubscription attempts while Redis is down.
RESUBSCRIBE_BACKOFF_S = 0.2
#: TCP keepalive of the registry connections: a registry that went silent (a partition, not a restart)
#: is noticed within about 5 + 2 x 3 = 11 s, also by the pub/sub listener, which reads without a timeout.
KEEPALIVE_OPTIONS: dict[int, int] = (
    {socket.TCP_KEEPIDLE: 5, socket.TCP_KEEPINTVL: 2, socket.TCP_KEEPCNT: 3} if hasattr(socket, "TCP_KEEPIDLE") else {}
)
#: How long :meth:`RedisRegistry.subscribe` waits for Redis to confirm a new channel.
SUBSCRIBE_CONFIRM_TIMEOUT_S = 2.0

#: Errors that mean "the registry cannot serve us now" (READONLY: a replica after a failover).
_DOWN_ERRORS = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,
    # A cluster in failover: no primary for a slot yet, or a slot in migration.
    redis.exceptions.ClusterDownError,
    redis.exceptions.TryAgainError,
    redis.exceptions.MasterDownError,
    redis.exceptions.SlotNotCoveredError,
    OSError,
    asyncio.TimeoutError,
)
_T = TypeVar("_T")

# Session hash fields: user, lastClientId, lastServerSeq, subs (JSON array), and the outbox as one field
# per message, ``m:<seq>`` -> payload JSON text, for seqs outFirst..lastServerSeq, with outBytes their
# total size. Appending and trimming touch only the fields that change, so a commit costs the same
# whatever the outbox holds.
_WRITE_OUTBOX_LUA = """
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
"""

# KEYS: route key, session key.
# ARGV: 1 server, 2 routing ttl, 3 reject(0|1), 4 owner the caller found gone ('' none), 5 session id,
# 6 resume(0|1), 7 session ttl, 8 replay after this seq ('' none), 9 outbox max messages, 10 outbox max bytes.
# Returns {1, previous|false, resumed, lastClientId, lastServerSeq, subs, outFirst, seq1, payload1, ...}
# or {0, owner} (another server owns the user under reject: the caller checks that owner's heartbeat).
HANDSHAKE_LUA = """
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
if ARGV[8] ~= '' then
  for s = math.max(first, tonumber(ARGV[8]) + 1), last_seq do
    local p = redis.call('HGET', KEYS[2], 'm:' .. string.format('%d', s))
    if p then
      reply[#reply + 1] = s
      reply[#reply + 1] = p
    end
  end
end
return reply
"""

# KEYS: session key, route key.
# ARGV: what stays the same for a session first (packed once, see _commit_head): 1 session id, 2 session ttl,
# 3 server, 4 routing ttl, 5 outbox max messages, 6 outbox max bytes; then 7 msg id, 8 topic op, 9 topic,
# 10 payloads (JSON array of JSON texts), and the caller's mirror: 11 lastClientId, 12 lastServerSeq (the floor
# of what is assigned), and, used only when the hash is gone (e.g. after a Redis restart), 13 subs ('' none),
# 14 outbox (JSON). Returns {duplicate, firstSeq, lastClientId, lastServerSeq,
# subs, outFirst}, {3} (the hash is gone: send the mirror) or {4} (the user's session is another one now).
COMMIT_LUA = (
    _WRITE_OUTBOX_LUA
    + """
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
local limit, maxb = tonumber(ARGV[5]), tonumber(ARGV[6])
while (newseq - first + 1) > limit or (bytes > maxb and first < newseq) do
  bytes = bytes - redis.call('HSTRLEN', KEYS[1], 'm:' .. string.format('%d', first))
  redis.call('HDEL', KEYS[1], 'm:' .. string.format('%d', first))
  first = first + 1
end
redis.call('HSET', KEYS[1], 'lastClientId', id, 'lastServerSeq', newseq, 'subs', subs, 'outFirst', first,
           'outBytes', bytes)
if redis.call('GET', KEYS[2]) == ARGV[3] then redis.call('EXPIRE', KEYS[2], ARGV[4]) end
return {0, seq + 1, id, newseq, subs, first}
"""
)

# KEYS: session key, route key, the push's idempotency key (read only when ARGV 6 is '1').
# ARGV: 1 payload (JSON text), 2 user id, 3 push channel prefix, 4 suffix, 5 the user's sharded channel ('' on
# one primary), 6 '1' when the push has an idempotency key, 7 replicas the caller waits for (0: none).
# Appends the payload with the next seq (or finds the seq its key already got), trims by the limits stored with
# the session, and announces it: on one primary on the owning server's push channel, on a cluster with SPUBLISH
# on the user's own channel (same slot). When the caller waits for replicas, the announcement is left to it
# (after WAIT): it is made only once a replica holds the push. A duplicate then writes the session id again (same
# value), so the caller's WAIT on this connection also covers the first push with that key, made perhaps on another.
# Returns {1, seq, session id, owner|false, duplicate, body|'', channel|''} or {0} (no session).
PUSH_LUA = """
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
  local limit, maxb = tonumber(f[5]) or 1000, tonumber(f[6]) or 1048576
  while (seq - first + 1) > limit or (bytes > maxb and first < seq) do
    bytes = bytes - redis.call('HSTRLEN', KEYS[1], 'm:' .. string.format('%d', first))
    redis.call('HDEL', KEYS[1], 'm:' .. string.format('%d', first))
    first = first + 1
  end
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
"""

# KEYS: topic meta key, topic log key. ARGV: 1 payload (JSON text), 2 epoch if the topic is new, 3 retention
# count, 4 retention ms, 5 meta ttl s, 6 topic, 7 topic channel, 8 'PUBLISH' (one primary) or 'SPUBLISH'
# (cluster: the channel is in the topic's slot). Returns {offset, epoch}.
PUBLISH_TOPIC_LUA = """
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
"""

# KEYS: topic meta key, topic log key. ARGV: 1 offset, 2 epoch, 3 limit.
# Returns {epoch, offset now, o1, d1, o2, d2, ...}: the entries after ARGV offset, oldest first, read only
# when the epoch matches and at most ``limit`` are missing (the caller judges completeness).
TOPIC_SINCE_LUA = """
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
"""

# KEYS: session key. ARGV: 1 session id, 2 first seq, 3 last seq, 4 '1' when the caller waits for replicas.
# Returns {lastServerSeq, seq1, payload1, ...} (the kept messages of the range) or {} (the session is another one,
# or gone). When the caller waits for replicas and a message was found, the script writes the session id again
# (same value): a propagated write, so a WAIT on the same connection then confirms that the replicas hold
# everything this read returned (replication is one ordered stream).
OUTBOX_READ_LUA = """
local f = redis.call('HMGET', KEYS[1], 'sid', 'lastServerSeq', 'outFirst')
if f[1] ~= ARGV[1] then return {} end
local last = tonumber(f[2]) or 0
local reply = {last}
for s = math.max(tonumber(ARGV[2]), tonumber(f[3]) or 1), math.min(tonumber(ARGV[3]), last) do
  local p = redis.call('HGET', KEYS[1], 'm:' .. string.format('%d', s))
  if p then
    reply[#reply + 1] = s
    reply[#reply + 1] = p
  end
end
if ARGV[4] == '1' and #reply > 1 then redis.call('HSET', KEYS[1], 'sid', ARGV[1]) end
return reply
"""

# KEYS: route key. ARGV: server. Compare-and-delete.
RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: route key, session key.
# ARGV: 1 server, 2 routing ttl, 3 session id, 4 lastClientId, 5 lastServerSeq, 6 subs, 7 session ttl,
# 8 outbox (JSON), 9 outbox max messages, 10 outbox max bytes, 11 the last seq the registry had confirmed to
# the mirror (-1 unknown). When the mirror is ahead (it numbered replies while the registry was unreachable),
# it is written; messages the registry numbered after ARGV 11 meanwhile (pushes) are kept, renumbered after
# the mirror's last seq, so no seq means two messages.
# Returns 1 (re-registered) or 0 (another server owns the user now).
RECONCILE_LUA = (
    _WRITE_OUTBOX_LUA
    + """
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
"""
)


def _reraise_if_cancelling() -> None:
    """Raise ``CancelledError`` if this task was cancelled: redis-py may turn a cancelled read into a
    connection error, and a retry loop that swallowed it would never stop."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@functools.lru_cache(maxsize=4096)
def _subs(value: Any) -> tuple[str, ...]:
    """The sorted topics of a session hash's ``subs`` field (cached: most sessions share a few sets)."""
    try:
        parsed = json.loads(_text(value)) if value is not None else []
    except ValueError:
        return ()
    return tuple(sorted(str(t) for t in parsed)) if isinstance(parsed, list) else ()


@functools.lru_cache(maxsize=16384)
def _session_keys(user_id: str) -> tuple[str, str]:
    """KEYS of the commit and push scripts: the user's session and routing keys (kept for the
    16,384 users seen last: a commit per message would escape the id twice again)."""
    return keys.session_key(user_id), keys.user_key(user_id)


@functools.lru_cache(maxsize=16384)
def _commit_head(user_id: str, constants: tuple[str | int, ...], parts: int) -> bytes:
    """The packed start of a commit's ``EVALSHA`` of ``parts`` parts in all: the SHA, the user's keys and
    ``constants`` (the leading ``ARGV`` that stay the same for a session), behind which the rest is packed
    per message (packing all 19 parts took 4.3 us, the 8 that change 1.7 us)."""
    head = pack_command((b"EVALSHA", _COMMIT.sha, 2, *_session_keys(user_id), *constants))
    return b"*%d\r\n" % parts + head[head.index(b"\n") + 1 :]


def _outbox(flat: Sequence[Any]) -> tuple[OutboxEntry, ...]:
    """``[seq1, payload1, seq2, payload2, ...]`` from the handshake script as outbox entries."""
    return tuple((int(flat[i]), _text(flat[i + 1])) for i in range(0, len(flat) - 1, 2))


def _outbox_json(outbox: Sequence[OutboxEntry]) -> str:
    return json.dumps([[seq, text] for seq, text in outbox], separators=(",", ":"))


def _subs_json(subs: Sequence[str]) -> str:
    return json.dumps(sorted(subs), separators=(",", ":"))


_HANDSHAKE = LaneScript(HANDSHAKE_LUA)
_COMMIT = LaneScript(COMMIT_LUA)
_PUSH = LaneScript(PUSH_LUA)
_PUBLISH_TOPIC = LaneScript(PUBLISH_TOPIC_LUA)
_TOPIC_SINCE = LaneScript(TOPIC_SINCE_LUA)
_RELEASE = LaneScript(RELEASE_LUA)
_OUTBOX_READ = LaneScript(OUTBOX_READ_LUA)
_RECONCILE = LaneScript(RECONCILE_LUA)


def _unavailable(exc: BaseException) -> RegistryUnavailable:
    """What a caller sees for one of :data:`_DOWN_ERRORS` (re-raises a pending cancellation first)."""
    _reraise_if_cancelling()
    return RegistryUnavailable(f"registry unreachable: {type(exc).__name__}: {exc}")


class RedisRegistry:
    """:class:`~stickyws.server.registry.Registry` on Redis: one primary, or a Redis Cluster.

    ``cluster``: ``None`` (the default) asks the registry itself on first use (``INFO cluster``), so
    an ElastiCache configuration endpoint works as it is; ``True``/``False`` skip the question. On a
    cluster every script runs in the slot of its keys (all of one user's or one topic's, see
    :mod:`stickyws.keys`) on the lane of the primary that owns the slot, and pub/sub is sharded
    (:mod:`stickyws.server.cluster_listener`).
    ``credential_provider`` (e.g. :mod:`stickyws.registry_auth`) authenticates every connection.
    """

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = POOL_SIZE,
        credential_provider: CredentialProvider | None = None,
        cluster: bool | None = None,
        ack_wait_replicas: int = ACK_WAIT_REPLICAS,
        ack_wait_timeout_ms: int = ACK_WAIT_TIMEOUT_MS,
    ) -> None:
        self._ack_wait_replicas = ack_wait_replicas
        self._ack_wait_timeout_ms = ack_wait_timeout_ms
        self._credential_provider = credential_provider
        self.available = True
        self._url = url
        self._pool_size = pool_size
        self._pool = aioredis.BlockingConnectionPool.from_url(
            url,
            credential_provider=credential_provider,
            max_connections=pool_size,
            timeout=POOL_TIMEOUT_S,
            socket_timeout=SOCKET_TIMEOUT_S,
            socket_connect_timeout=CONNECT_TIMEOUT_S,
            socket_keepalive=True,
            socket_keepalive_options=KEEPALIVE_OPTIONS,
        )
        self._client: Any = aioredis.Redis(connection_pool=self._pool, retry=Retry(NoBackoff(), 0))
        self._cluster_client: Any = None
        self._listener: ClusterListener | None = None
        #: ``"single"`` or ``"cluster"`` once known.
        self.mode: str | None = None if cluster is None else ("cluster" if cluster else "single")
        self._mode_lock = asyncio.Lock()
        push = keys.push_channel("\x00")
        self._push_prefix, _, self._push_suffix = push.partition("\x00")
        self._closed = False
        #: Where the scripts go once the mode is known: one auto-pipelined connection to the primary, or
        #: one to each primary of a cluster.
        self.lane: RedisLane | ClusterLanes | None = None
        # Pub/sub: the channels the listener holds, and its connection on one primary.
        self._channels: set[str] = set()
        self._subscriber: RedisSubscriber | None = None

    @property
    def is_cluster(self) -> bool:
        """True on a Redis Cluster (known after the first call, or when given)."""
        return self.mode == "cluster"

    async def _ensure_mode(self) -> None:
        """Learn whether the registry is a cluster (once), and switch to the cluster client if so."""
        async with self._mode_lock:
            if self.mode is None:
                info = await self._client.info("cluster")
                self.mode = "cluster" if int(info.get("cluster_enabled", 0)) == 1 else "single"
            if self.mode == "single" and self.lane is None:
                self.lane = RedisLane(
                    self._url,
                    credential_provider=self._credential_provider,
                    connect_timeout_s=CONNECT_TIMEOUT_S,
                    reply_timeout_s=SOCKET_TIMEOUT_S,
                    keepalive_options=KEEPALIVE_OPTIONS,
                )
            if self.mode == "cluster" and self._cluster_client is None:
                self._cluster_client = RedisCluster.from_url(
                    self._url,
                    credential_provider=self._credential_provider,
                    socket_timeout=SOCKET_TIMEOUT_S,
                    socket_connect_timeout=CONNECT_TIMEOUT_S,
                    max_connections=self._pool_size,
                )
                await self._cluster_client.initialize()
                single, self._client = self._client, self._cluster_client
                self.lane = ClusterLanes(
                    self._cluster_client,
                    RedisLane(
                        self._url,
                        credential_provider=self._credential_provider,
                        connect_timeout_s=CONNECT_TIMEOUT_S,
                        reply_timeout_s=SOCKET_TIMEOUT_S,
                        keepalive_options=KEEPALIVE_OPTIONS,
                    ),
                )
                with contextlib.suppress(Exception):
                    await single.aclose()
                with contextlib.suppress(Exception):
                    await self._pool.disconnect()

    def user_channel(self, user_id: str) -> str | None:
        """The channel the holder of ``user_id`` must subscribe to for pushes: the user's own sharded
        channel on a cluster; ``None`` on one primary (pushes come on the server's channel)."""
        return keys.user_push_channel(user_id) if self.is_cluster else None

    @property
    def client(self) -> Any:
        """The underlying client, ``redis.asyncio.Redis`` or ``RedisCluster`` (for tests and the local twin)."""
        return self._client

    async def _call(self, make: Callable[[], Awaitable[_T]]) -> _T:
        try:
            if self.lane is None:
                await self._ensure_mode()
            result = await make()
        except _DOWN_ERRORS as exc:
            self.available = False
            raise _unavailable(exc) from None
        self.available = True
        return result

    async def _lanes(self) -> RedisLane | ClusterLanes:
        """Where the scripts go, once the mode is known (raises one of :data:`_DOWN_ERRORS` until then)."""
        if self.lane is None:
            await self._ensure_mode()
        assert self.lane is not None
        return self.lane

    async def _run(
        self, script: LaneScript, call_keys: Sequence[str], args: Sequence[str | int]
    ) -> tuple[Any, RedisLane]:
        """Run one script on its node's lane: the reply, and that lane (a ``WAIT`` must follow on it)."""
        try:
            lanes = self.lane or await self._lanes()
            if type(lanes) is RedisLane:  # one primary: one coroutine fewer on every commit
                result = await lanes.evalsha(script, call_keys, args), lanes
            else:
                result = await lanes.evalsha_with_lane(script, call_keys, args)
        except _DOWN_ERRORS as exc:
            self.available = False
            raise _unavailable(exc) from None
        self.available = True
        return result

    async def handshake(
        self,
        *,
        user_id: str,
        server_id: str,
        session_id: str,
        resume: bool,
        reject_live_owner: bool,
        routing_ttl_s: int,
        session_ttl_s: int,
        replay_after: int | None = None,
        limits: OutboxLimits = DEFAULT_OUTBOX_LIMITS,
    ) -> ClaimResult:
        call_keys = [keys.user_key(user_id), keys.session_key(user_id)]
        gone = ""
        for _ in range(3):  # under reject: claim, or find the owner, check its heartbeat, claim if it is gone
            args: list[str | int] = [
                server_id, routing_ttl_s, "1" if reject_live_owner else "0", gone, session_id, "1" if resume else "0",
                session_ttl_s, "" if replay_after is None else replay_after, limits.max_messages, limits.max_bytes,
            ]  # fmt: skip
            reply, lane = await self._run(_HANDSHAKE, call_keys, args)
            if reply[0] == 1:
                break
            owner = _text(reply[1])
            beat = await self._call(lambda: self._client.get(keys.heartbeat_key(owner)))  # noqa: B023
            if heartbeat_is_live(_text(beat) if beat is not None else None):
                return ClaimResult(False, owner)
            gone = owner
        else:
            return ClaimResult(False, _text(reply[1]))
        previous = _text(reply[1]) if reply[1] is not None else None
        record = SessionRecord(
            session_id, user_id, int(reply[3]), int(reply[4]), _subs(reply[5]), _outbox(reply[7:]), int(reply[6])
        )
        # The script wrote the route, so a WAIT on its connection covers the replayed messages too.
        confirmed = len(reply) <= 7 or await self._replicated(lane)
        return ClaimResult(True, previous, record, bool(reply[2]), replay_confirmed=confirmed)

    async def release(self, user_id: str, server_id: str) -> bool:
        deleted, _ = await self._run(_RELEASE, [keys.user_key(user_id)], [server_id])
        return bool(deleted)

    async def owner(self, user_id: str) -> str | None:
        value = await self._call(lambda: self._client.get(keys.user_key(user_id)))
        return _text(value) if value is not None else None

    async def commit(
        self,
        record: SessionRecord,
        commit: Commit,
        *,
        server_id: str,
        routing_ttl_s: int,
        session_ttl_s: int,
        limits: OutboxLimits = DEFAULT_OUTBOX_LIMITS,
    ) -> CommitResult:
        constants = (
            record.session_id, session_ttl_s, server_id, routing_ttl_s, limits.max_messages, limits.max_bytes
        )  # fmt: skip
        tail = (
            commit.msg_id, commit.topic_op, commit.topic, json_codec.dumps(commit.payloads), record.last_client_id,
            record.last_server_seq, "", "",
        )  # fmt: skip
        args: list[str | int] = [*constants, *tail]
        call_keys = _session_keys(record.user_id)
        lane = self.lane
        # One primary: the constants packed once per session, and no coroutine between here and the lane.
        if type(lane) is RedisLane:
            head = _commit_head(record.user_id, constants, 5 + len(args))
            packed_tail = pack_command(tail)
            try:
                packed = head + packed_tail[packed_tail.index(b"\n") + 1 :]
                reply = await lane.evalsha_packed(_COMMIT, packed, call_keys, args)
            except _DOWN_ERRORS as exc:  # as in _run
                self.available = False
                raise _unavailable(exc) from None
            self.available = True
        else:
            reply, lane = await self._run(_COMMIT, call_keys, args)
        if reply[0] == 3:  # the hash is gone (e.g. Redis restarted): send the mirror once, then as before
            args[12], args[13] = _subs_json(record.subscriptions), _outbox_json(record.outbox) or "[]"
            reply, lane = await self._run(_COMMIT, call_keys, args)
        if self._ack_wait_replicas and reply[0] == 0 and not lane.nothing_to_wait_for():
            # Acknowledged only once a replica holds it: a failover then cannot lose this seq and hand it
            # to a later push.
            try:
                await lane.wait_replicated(self._ack_wait_replicas, self._ack_wait_timeout_ms)
            except _DOWN_ERRORS as exc:
                self.available = False
                raise _unavailable(exc) from None
        if reply[0] == 4:
            raise SessionReplaced(record.session_id)
        duplicate, first_seq = bool(reply[0]), int(reply[1])
        # The outbox mirror is computed here with the script's trimming rule (append_outbox, at the mirror's
        # own small limits) rather than read back, so a commit never ships the outbox over the wire.
        if duplicate:
            outbox, chars = record.outbox, record.outbox_chars
        else:
            outbox, chars = extend_outbox(record.outbox, first_seq, commit.payloads, chars=record.outbox_chars)
        new = SessionRecord(
            record.session_id, record.user_id, reply[2], reply[3], _subs(reply[4]), outbox, reply[5], chars, reply[3]
        )
        return CommitResult(duplicate, first_seq, new)

    async def push(self, *, user_id: str, payload: str, key: str | None = None) -> PushResult:
        call_keys = [*_session_keys(user_id), keys.push_key(user_id, key or "")]
        try:
            lanes = await self._lanes()
            want = 0
            if self._ack_wait_replicas:
                owner_lane = lanes if isinstance(lanes, RedisLane) else lanes.lane_for(call_keys[0])
                # Every attached replica up to ack_wait_replicas, also after a timeout: a push is never shown
                # before a replica holds it (commits alone wait for fewer once a replica stopped answering).
                want = min(self._ack_wait_replicas, await owner_lane.replicas(strict=True))
            args: list[str | int] = [
                payload, user_id, self._push_prefix, self._push_suffix, self.user_channel(user_id) or "",
                "1" if key is not None else "", want,
            ]  # fmt: skip
            reply, lane = await lanes.evalsha_with_lane(_PUSH, call_keys, args)
            if reply[0] == 0:
                return PushResult("no_session")
            if want:  # answered (stored or sent) and announced only once a replica has it (WAIT on its connection)
                acked = await lane.wait_replicated(want, self._ack_wait_timeout_ms, strict=True)
                if acked < want:
                    raise RegistryUnavailable(
                        f"push {reply[1]} to {user_id!r} reached {acked} of {want} replicas within "
                        f"{self._ack_wait_timeout_ms} ms: retry with the same key"
                    )
            if reply[5]:
                await lane.execute(b"SPUBLISH" if self.is_cluster else b"PUBLISH", reply[6], reply[5])
        except _DOWN_ERRORS as exc:
            self.available = False
            raise _unavailable(exc) from None
        self.available = True
        owner = _text(reply[3]) if reply[3] else None
        return PushResult("sent" if owner else "stored", int(reply[1]), _text(reply[2]), owner, bool(reply[4]))

    async def outbox_range(self, *, user_id: str, session_id: str, first_seq: int, last_seq: int) -> dict[int, str]:
        read = await self.read_outbox(user_id=user_id, session_id=session_id, first_seq=first_seq, last_seq=last_seq)
        return read.entries

    async def read_outbox(self, *, user_id: str, session_id: str, first_seq: int, last_seq: int) -> OutboxRead:
        wait = "1" if self._ack_wait_replicas else "0"
        args: list[str | int] = [session_id, first_seq, last_seq, wait]
        reply, lane = await self._run(_OUTBOX_READ, [keys.session_key(user_id)], args)
        if not reply:
            return OutboxRead({}, None)
        entries = {int(reply[i]): _text(reply[i + 1]) for i in range(1, len(reply) - 1, 2)}
        if entries and not await self._replicated(lane):
            raise NotYetReplicated(
                f"messages {min(entries)}-{max(entries)} of {user_id!r} are not confirmed on a replica within "
                f"{self._ack_wait_timeout_ms} ms: read them again later (they are kept, not lost)"
            )
        return OutboxRead(entries, int(reply[0]))

    async def _replicated(self, lane: RedisLane) -> bool:
        """Whether ``ack_wait_replicas`` replicas (at most the attached ones) hold every write ``lane``'s
        connection made so far (strict: also after an earlier timeout)."""
        if not self._ack_wait_replicas:
            return True
        try:
            want = min(self._ack_wait_replicas, await lane.replicas(strict=True))
            acked = await lane.wait_replicated(want, self._ack_wait_timeout_ms, strict=True)
        except _DOWN_ERRORS as exc:
            self.available = False
            raise _unavailable(exc) from None
        return acked >= want

    async def session_seqs(self, *, sessions: Sequence[tuple[str, str]]) -> list[int | None]:
        if not sessions:
            return []

        async def run() -> list[Any]:
            if self.is_cluster:
                return await asyncio.gather(
                    *(self._client.hmget(keys.session_key(u), ["sid", "lastServerSeq"]) for u, _ in sessions)
                )
            pipe = self._client.pipeline(transaction=False)
            for user_id, _ in sessions:
                pipe.hmget(keys.session_key(user_id), ["sid", "lastServerSeq"])
            return list(await pipe.execute())

        replies = await self._call(run)
        return [
            int(seq) if sid is not None and _text(sid) == session_id and seq is not None else None
            for (_, session_id), (sid, seq) in zip(sessions, replies, strict=True)
        ]

    async def publish_topic(
        self, *, topic: str, payload: str, retention_count: int, retention_s: int, epoch_if_new: str
    ) -> Publication:
        call_keys = [keys.topic_meta_key(topic), keys.topic_log_key(topic)]
        await self._call(self._lanes)  # the mode decides the publish command
        args: list[str | int] = [
            payload, epoch_if_new, retention_count, retention_s * 1000, topic_meta_ttl_s(retention_s), topic,
            keys.topic_channel(topic), "SPUBLISH" if self.is_cluster else "PUBLISH",
        ]  # fmt: skip
        reply, _ = await self._run(_PUBLISH_TOPIC, call_keys, args)
        return Publication(topic, int(reply[0]), _text(reply[1]), payload)

    async def topic_positions(self, *, topics: Sequence[str]) -> list[TopicPosition]:
        if not topics:
            return []

        async def run() -> list[Any]:
            if self.is_cluster:
                return await asyncio.gather(
                    *(self._client.hmget(keys.topic_meta_key(t), ["epoch", "offset"]) for t in topics)
                )
            pipe = self._client.pipeline(transaction=False)
            for topic in topics:
                pipe.hmget(keys.topic_meta_key(topic), ["epoch", "offset"])
            return list(await pipe.execute())

        replies = await self._call(run)
        return [TopicPosition(int(o) if o is not None else 0, _text(e) if e is not None else "") for e, o in replies]

    async def topic_since(self, *, topic: str, offset: int, epoch: str, limit: int) -> TopicHistory:
        call_keys = [keys.topic_meta_key(topic), keys.topic_log_key(topic)]
        reply, _ = await self._run(_TOPIC_SINCE, call_keys, [offset, epoch, limit])
        position = TopicPosition(int(reply[1]), _text(reply[0]))
        entries = [(int(reply[i]), _text(reply[i + 1])) for i in range(2, len(reply) - 1, 2)]
        return history_after(position, offset, epoch, entries, topic)

    async def reconcile(
        self, server_id: str, records: Sequence[SessionRecord], *, routing_ttl_s: int, session_ttl_s: int
    ) -> list[str]:
        if not records:
            return []
        limits = DEFAULT_OUTBOX_LIMITS

        def call(r: SessionRecord) -> Awaitable[tuple[Any, RedisLane]]:
            return self._run(
                _RECONCILE,
                [keys.user_key(r.user_id), keys.session_key(r.user_id)],
                [
                    server_id, routing_ttl_s, r.session_id, r.last_client_id, r.last_server_seq,
                    _subs_json(r.subscriptions), session_ttl_s, _outbox_json(r.outbox), limits.max_messages,
                    limits.max_bytes, r.synced_seq,
                ],
            )  # fmt: skip

        # All in flight at once: one write per node on the lanes.
        replies = [reply for reply, _ in await asyncio.gather(*(call(r) for r in records))]
        return [r.user_id for r, ok in zip(records, replies, strict=True) if not ok]

    async def heartbeat(self, server_id: str, body: str, ttl_s: int) -> None:
        await self._call(lambda: self._client.set(keys.heartbeat_key(server_id), body, ex=ttl_s))

    async def drain_notice(self, server_id: str) -> keys.DrainNotice | None:
        text = await self._call(lambda: self._client.get(keys.drain_key(server_id)))
        if text is None:
            return None
        try:
            return keys.DrainNotice.from_json(text)
        except ValueError:
            return None

    async def publish(self, channel: str, text: str) -> None:
        await self._call(lambda: self._client.publish(channel, text))

    async def listen(
        self, channels: Sequence[str], on_message: MessageCallback, on_subscribed: SubscribedCallback
    ) -> None:
        self._channels.update(channels)
        while self.lane is None:
            try:
                await self._call(self._lanes)  # learn the mode first
            except RegistryUnavailable:
                await asyncio.sleep(RESUBSCRIBE_BACKOFF_S)
        if self.is_cluster:
            await self._listen_cluster(on_message, on_subscribed)
            return
        while True:
            subscriber = RedisSubscriber(
                self._url,
                credential_provider=self._credential_provider,
                connect_timeout_s=CONNECT_TIMEOUT_S,
                reply_timeout_s=SOCKET_TIMEOUT_S,
                keepalive_options=KEEPALIVE_OPTIONS,
            )
            try:
                await subscriber.open()
                wanted = sorted(self._channels)
                await subscriber.subscribe(wanted, SUBSCRIBE_CONFIRM_TIMEOUT_S)
                self._subscriber = subscriber
                missed = self._channels.difference(wanted)  # asked for while the subscribe was on its way
                if missed:
                    await subscriber.subscribe(sorted(missed), SUBSCRIBE_CONFIRM_TIMEOUT_S)
                self.available = True
                await on_subscribed()
                while True:
                    # No read timeout (it cost a timer per message); a peer that went silent is found by
                    # TCP keepalive (KEEPALIVE_OPTIONS), a closed one at once.
                    for channel, data in await subscriber.messages():
                        await on_message(channel.decode(), data.decode())
            except (*_DOWN_ERRORS, RegistryUnavailable):
                _reraise_if_cancelling()
                self.available = False
                self._subscriber = None
                await asyncio.sleep(RESUBSCRIBE_BACKOFF_S)
            finally:
                self._subscriber = None
                await subscriber.close()

    async def _listen_cluster(self, on_message: MessageCallback, on_subscribed: SubscribedCallback) -> None:
        kwargs = {k: v for k, v in parse_url(self._url).items() if k not in ("host", "port", "db")}
        if self._credential_provider is not None:
            kwargs["credential_provider"] = self._credential_provider
        listener = ClusterListener(self._client, kwargs, on_message, CONNECT_TIMEOUT_S)
        listener.wanted.update(self._channels)
        self._listener = listener

        async def subscribed() -> None:
            self.available = True
            await on_subscribed()

        try:
            await listener.run(subscribed, RESUBSCRIBE_BACKOFF_S)
        finally:
            self._listener = None

    async def subscribe(self, channels: Sequence[str]) -> None:
        if self._listener is not None:
            self._channels.update(channels)
            await self._listener.subscribe(channels, SUBSCRIBE_CONFIRM_TIMEOUT_S)
            return
        new = [c for c in channels if c not in self._channels]
        self._channels.update(new)
        subscriber = self._subscriber
        if new and subscriber is not None:  # else the listener subscribes to the whole set when it (re)connects
            await subscriber.subscribe(new, SUBSCRIBE_CONFIRM_TIMEOUT_S)

    async def unsubscribe(self, channels: Sequence[str]) -> None:
        if self._listener is not None:
            self._channels.difference_update(channels)
            await self._listener.unsubscribe(channels)
            return
        gone = [c for c in channels if c in self._channels]
        self._channels.difference_update(gone)
        if gone and self._subscriber is not None:
            self._subscriber.unsubscribe(gone)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.lane is not None:
            await self.lane.close()
        with contextlib.suppress(Exception):
            await self._client.aclose()
        with contextlib.suppress(Exception):
            await self._pool.disconnect()
