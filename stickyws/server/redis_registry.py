"""The registry on Redis (redis-py asyncio): Lua scripts keep every decision to one round trip.

Contracts are those of :class:`stickyws.server.registry.Registry`. Connection handling:

* a :class:`redis.asyncio.BlockingConnectionPool` of :data:`POOL_SIZE` connections: a burst of
  handshakes waits for a free connection (up to :data:`POOL_TIMEOUT_S`) instead of failing, which
  redis-py 8.1's plain pool does past its limit with ``MaxConnectionsError``;
* short socket timeouts and no client-side retries, so an outage turns into
  :class:`RegistryUnavailable` within about a second and the server applies its policy;
* scripts go through :meth:`redis.asyncio.Redis.register_script` (EVALSHA, reloaded after a Redis
  restart flushes the script cache).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.credentials import CredentialProvider

from stickyws import keys
from stickyws.server.registry import ClaimResult, MessageCallback, RegistryUnavailable, SubscribedCallback
from stickyws.server.session import (
    OUTBOX_LIMIT,
    OUTBOX_MAX_BYTES,
    Commit,
    CommitResult,
    OutboxEntry,
    SessionRecord,
    append_outbox,
)

#: Connections in the pool (the settings model has no field for it yet).
POOL_SIZE = 64
#: How long a call waits for a free pooled connection.
POOL_TIMEOUT_S = 2.0
SOCKET_TIMEOUT_S = 2.0
CONNECT_TIMEOUT_S = 1.0
#: Pause between pub/sub resubscription attempts while Redis is down.
RESUBSCRIBE_BACKOFF_S = 0.2

#: Errors that mean "the registry cannot serve us now" (READONLY: a replica after a failover).
_DOWN_ERRORS = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,
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

# KEYS: user key, session key.
# ARGV: server, routing ttl, reject(0|1), heartbeat prefix, heartbeat suffix, session ttl, user, resume(0|1).
# Returns {1, previous|false, resumed, lastClientId, lastServerSeq, subs, seq1, payload1, seq2, ...},
# {0, owner} (a live owner under reject) or {2} (the session belongs to another user).
HANDSHAKE_LUA = """
local owner = redis.call('HGET', KEYS[2], 'user')
if ARGV[8] == '1' and owner and owner ~= ARGV[7] then return {2} end
local prev = redis.call('GET', KEYS[1])
if prev and prev ~= ARGV[1] and ARGV[3] == '1' then
  local hb = redis.call('GET', ARGV[4] .. prev .. ARGV[5])
  if hb then
    local ok, body = pcall(cjson.decode, hb)
    local gone = ok and type(body) == 'table' and (body['status'] == 'draining' or body['status'] == 'stopped')
    if not gone then return {0, prev} end
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
local resumed = 0
if ARGV[8] == '1' and owner then
  resumed = 1
else
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[2], 'user', ARGV[7], 'lastClientId', 0, 'lastServerSeq', 0, 'subs', '[]',
             'outFirst', 1, 'outBytes', 0)
end
redis.call('EXPIRE', KEYS[2], ARGV[6])
local f = redis.call('HMGET', KEYS[2], 'lastClientId', 'lastServerSeq', 'subs', 'outFirst')
local last_seq = tonumber(f[2]) or 0
local reply = {1, prev, resumed, tonumber(f[1]) or 0, last_seq, f[3] or '[]'}
for s = tonumber(f[4]) or (last_seq + 1), last_seq do
  local p = redis.call('HGET', KEYS[2], 'm:' .. s)
  if p then
    reply[#reply + 1] = s
    reply[#reply + 1] = p
  end
end
return reply
"""

# KEYS: session key, user key.
# ARGV: msg id, (unused), topic op, topic, session ttl, server, routing ttl, user, then the caller's
# lastClientId, lastServerSeq, subs (used when the hash is gone, e.g. after a Redis restart), the payloads
# (JSON array of JSON texts), outbox limit, outbox max bytes, and the caller's outbox (JSON, used when
# the hash is gone). Returns {duplicate, firstSeq, lastClientId, lastServerSeq, subs}.
COMMIT_LUA = (
    _WRITE_OUTBOX_LUA
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then
  if ARGV[15] == '' then return {3} end
  redis.call('HSET', KEYS[1], 'user', ARGV[8], 'lastClientId', ARGV[9], 'lastServerSeq', ARGV[10], 'subs', ARGV[11])
  local first, bytes = write_outbox(KEYS[1], ARGV[15])
  redis.call('HSET', KEYS[1], 'outFirst', first or (tonumber(ARGV[10]) + 1), 'outBytes', bytes)
end
local f = redis.call('HMGET', KEYS[1], 'lastClientId', 'lastServerSeq', 'subs', 'outFirst', 'outBytes')
local last = tonumber(f[1]) or 0
local seq = tonumber(f[2]) or 0
local subs = f[3] or '[]'
local id = tonumber(ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[5])
if id <= last then return {1, seq + 1, last, seq, subs} end
if ARGV[3] ~= '' then
  local set = {}
  for _, t in ipairs(cjson.decode(subs)) do set[t] = true end
  if ARGV[3] == 'add' then set[ARGV[4]] = true else set[ARGV[4]] = nil end
  local list = {}
  for t, _ in pairs(set) do list[#list + 1] = t end
  table.sort(list)
  if #list == 0 then subs = '[]' else subs = cjson.encode(list) end
end
local payloads = cjson.decode(ARGV[12])
local newseq = seq + #payloads
local first = tonumber(f[4]) or (seq + 1)
local bytes = tonumber(f[5]) or 0
for i, p in ipairs(payloads) do
  redis.call('HSET', KEYS[1], 'm:' .. (seq + i), p)
  bytes = bytes + #p
end
local limit, maxb = tonumber(ARGV[13]), tonumber(ARGV[14])
while (newseq - first + 1) > limit or (bytes > maxb and first < newseq) do
  bytes = bytes - redis.call('HSTRLEN', KEYS[1], 'm:' .. first)
  redis.call('HDEL', KEYS[1], 'm:' .. first)
  first = first + 1
end
redis.call('HSET', KEYS[1], 'lastClientId', id, 'lastServerSeq', newseq, 'subs', subs, 'outFirst', first,
           'outBytes', bytes)
if redis.call('GET', KEYS[2]) == ARGV[6] then redis.call('EXPIRE', KEYS[2], ARGV[7]) end
return {0, seq + 1, id, newseq, subs}
"""
)

# KEYS: user key. ARGV: server. Compare-and-delete.
RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: user key, session key.
# ARGV: server, routing ttl, user, lastClientId, lastServerSeq, subs, session ttl, outbox (JSON).
# Returns 1 (re-registered) or 0 (another server owns the user now).
RECONCILE_LUA = (
    _WRITE_OUTBOX_LUA
    + """
local owner = redis.call('GET', KEYS[1])
if owner and owner ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
local last = tonumber(redis.call('HGET', KEYS[2], 'lastClientId') or '-1')
if last < tonumber(ARGV[4]) then
  redis.call('HSET', KEYS[2], 'user', ARGV[3], 'lastClientId', ARGV[4], 'lastServerSeq', ARGV[5], 'subs', ARGV[6])
  local first, bytes = write_outbox(KEYS[2], ARGV[8])
  redis.call('HSET', KEYS[2], 'outFirst', first or (tonumber(ARGV[5]) + 1), 'outBytes', bytes)
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


def _subs(value: Any) -> tuple[str, ...]:
    try:
        parsed = json.loads(_text(value)) if value is not None else []
    except ValueError:
        return ()
    return tuple(sorted(str(t) for t in parsed)) if isinstance(parsed, list) else ()


def _outbox(flat: Sequence[Any]) -> tuple[OutboxEntry, ...]:
    """``[seq1, payload1, seq2, payload2, ...]`` from the handshake script as outbox entries."""
    return tuple((int(flat[i]), _text(flat[i + 1])) for i in range(0, len(flat) - 1, 2))


def _outbox_json(outbox: Sequence[OutboxEntry]) -> str:
    return json.dumps([[seq, text] for seq, text in outbox], separators=(",", ":"))


def _subs_json(subs: Sequence[str]) -> str:
    return json.dumps(sorted(subs), separators=(",", ":"))


class RedisRegistry:
    """:class:`~stickyws.server.registry.Registry` on one Redis (standalone or a primary endpoint)."""

    def __init__(
        self, url: str, *, pool_size: int = POOL_SIZE, credential_provider: CredentialProvider | None = None
    ) -> None:
        """``credential_provider`` (e.g. :mod:`stickyws.registry_auth`) authenticates every pooled connection."""
        self.available = True
        self._pool = aioredis.BlockingConnectionPool.from_url(
            url,
            credential_provider=credential_provider,
            max_connections=pool_size,
            timeout=POOL_TIMEOUT_S,
            socket_timeout=SOCKET_TIMEOUT_S,
            socket_connect_timeout=CONNECT_TIMEOUT_S,
        )
        self._client = aioredis.Redis(connection_pool=self._pool, retry=Retry(NoBackoff(), 0))
        self._handshake = self._client.register_script(HANDSHAKE_LUA)
        self._commit = self._client.register_script(COMMIT_LUA)
        self._release = self._client.register_script(RELEASE_LUA)
        self._reconcile = self._client.register_script(RECONCILE_LUA)
        hb = keys.heartbeat_key("\x00")
        self._hb_prefix, _, self._hb_suffix = hb.partition("\x00")
        self._closed = False
        self._batch: list[tuple[list[str], list[Any], asyncio.Future[Any]]] = []
        self._flushes: set[asyncio.Task[None]] = set()

    def _batched_commit(self, call_keys: list[str], args: list[Any]) -> asyncio.Future[Any]:
        """Queue one commit; every commit queued in the same loop iteration goes out as one pipeline."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._batch.append((call_keys, list(args), fut))
        if len(self._batch) == 1:
            loop.call_soon(self._start_flush)
        return fut

    def _start_flush(self) -> None:
        task = asyncio.ensure_future(self._flush())
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _flush(self) -> None:
        batch, self._batch = self._batch, []
        try:
            pipe = self._client.pipeline(transaction=False)
            for call_keys, args, _ in batch:
                await self._commit(keys=call_keys, args=args, client=pipe)
            replies = await pipe.execute(raise_on_error=False)
        except BaseException as exc:
            for *_, fut in batch:
                if not fut.done():
                    fut.set_exception(exc if isinstance(exc, Exception) else RuntimeError("commit batch cancelled"))
            if not isinstance(exc, Exception):
                raise
            return
        for (_, _, fut), reply in zip(batch, replies, strict=True):
            if fut.done():
                continue
            if isinstance(reply, Exception):
                fut.set_exception(reply)
            else:
                fut.set_result(reply)

    @property
    def client(self) -> aioredis.Redis:
        """The underlying client (for tests and the local twin)."""
        return self._client

    async def _call(self, make: Callable[[], Awaitable[_T]]) -> _T:
        try:
            result = await make()
        except _DOWN_ERRORS as exc:
            _reraise_if_cancelling()
            self.available = False
            raise RegistryUnavailable(f"registry unreachable: {type(exc).__name__}: {exc}") from None
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
    ) -> ClaimResult:
        args: list[str | int] = [
            server_id, routing_ttl_s, "1" if reject_live_owner else "0", self._hb_prefix, self._hb_suffix,
            session_ttl_s, user_id, "1" if resume else "0",
        ]  # fmt: skip
        reply = await self._call(
            lambda: self._handshake(keys=[keys.user_key(user_id), keys.session_key(session_id)], args=args)
        )
        if reply[0] == 2:
            raise PermissionError("session belongs to another user")
        if reply[0] == 0:
            return ClaimResult(False, _text(reply[1]))
        previous = _text(reply[1]) if reply[1] is not None else None
        record = SessionRecord(session_id, user_id, int(reply[3]), int(reply[4]), _subs(reply[5]), _outbox(reply[6:]))
        return ClaimResult(True, previous, record, bool(reply[2]))

    async def release(self, user_id: str, server_id: str) -> bool:
        deleted = await self._call(lambda: self._release(keys=[keys.user_key(user_id)], args=[server_id]))
        return bool(deleted)

    async def owner(self, user_id: str) -> str | None:
        value = await self._call(lambda: self._client.get(keys.user_key(user_id)))
        return _text(value) if value is not None else None

    async def commit(
        self, record: SessionRecord, commit: Commit, *, server_id: str, routing_ttl_s: int, session_ttl_s: int
    ) -> CommitResult:
        args: list[str | int] = [
            commit.msg_id, commit.outputs, commit.topic_op, commit.topic, session_ttl_s, server_id, routing_ttl_s,
            record.user_id, record.last_client_id, record.last_server_seq, "",
            json.dumps(list(commit.payloads)), OUTBOX_LIMIT, OUTBOX_MAX_BYTES, "",
        ]  # fmt: skip
        call_keys = [keys.session_key(record.session_id), keys.user_key(record.user_id)]
        reply = await self._call(lambda: self._batched_commit(call_keys, args))
        if reply[0] == 3:  # the hash is gone (e.g. Redis restarted): send the mirror once, then as before
            args[10], args[14] = _subs_json(record.subscriptions), _outbox_json(record.outbox) or "[]"
            reply = await self._call(lambda: self._batched_commit(call_keys, args))
        duplicate, first_seq = bool(reply[0]), int(reply[1])
        # The outbox mirror is computed here with the script's trimming rule (append_outbox) rather than
        # read back, so a commit never ships the outbox over the wire.
        outbox = record.outbox if duplicate else append_outbox(record.outbox, first_seq, commit.payloads)
        new = SessionRecord(record.session_id, record.user_id, int(reply[2]), int(reply[3]), _subs(reply[4]), outbox)
        return CommitResult(duplicate, first_seq, new)

    async def reconcile(
        self, server_id: str, records: Sequence[SessionRecord], *, routing_ttl_s: int, session_ttl_s: int
    ) -> list[str]:
        if not records:
            return []

        async def run() -> list[Any]:
            pipe = self._client.pipeline(transaction=False)
            for r in records:
                await self._reconcile(
                    keys=[keys.user_key(r.user_id), keys.session_key(r.session_id)],
                    args=[
                        server_id, routing_ttl_s, r.user_id, r.last_client_id, r.last_server_seq,
                        _subs_json(r.subscriptions), session_ttl_s, _outbox_json(r.outbox),
                    ],
                    client=pipe,
                )  # fmt: skip
            return list(await pipe.execute())

        replies = await self._call(run)
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
        while True:
            pubsub = self._client.pubsub()
            try:
                await pubsub.subscribe(*channels)
                self.available = True
                await on_subscribed()
                while True:
                    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if msg is not None and msg.get("type") == "message":
                        await on_message(_text(msg["channel"]), _text(msg["data"]))
            except (*_DOWN_ERRORS, RegistryUnavailable):
                _reraise_if_cancelling()
                self.available = False
                await asyncio.sleep(RESUBSCRIBE_BACKOFF_S)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            await self._client.aclose()
        with contextlib.suppress(Exception):
            await self._pool.disconnect()
