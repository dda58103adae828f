"""Push from any backend: send to one user, or publish to a topic, through the registry alone.

Needs only the registry URL (``REDIS_URL``), never a connection to a server::

    from stickyws.publish import Publisher

    async with Publisher("redis://registry:6379/0") as pub:
        sent = await pub.send_to_user("alice", {"text": "hello"})   # PushResult: status, seq, sessionId
        pos = await pub.publish("prices", {"eur": 1.08})            # Publication: offset, epoch

    from stickyws.publish import SyncPublisher                      # scripts and Lambdas
    with SyncPublisher() as pub:                                    # REDIS_URL from the environment
        pub.send_to_user("alice", {"text": "hello"})

Delivery (see docs/server.md, "Push"): a user message is appended to the user's session outbox
with the next ``seq`` and handed to the server that holds the user, in one atomic registry call;
a user that is offline within the session TTL gets it on resume. A topic publication gets the
next ``offset`` of the topic's log (a bounded Redis Stream with an ``epoch``) and reaches every
subscriber once, in order, also after a reconnect within the retention.

Errors are :class:`PublishError` with a ``code``: ``bad_data`` (not JSON-serializable),
``too_large`` (over ``max_publish_bytes``), ``bad_user``/``bad_topic``/``bad_key``, ``no_session`` (only with
``require_session=True``) and ``registry_unavailable``.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import threading
from collections.abc import Coroutine, Mapping
from types import TracebackType
from typing import Any, Protocol, TypeVar

from stickyws.errors import StickywsError
from stickyws.registry.errors import RegistryUnavailable
from stickyws.registry.interfaces import PushResult, Sessions, Topics
from stickyws.registry.wire import Publication
from stickyws.settings import ENV_REDIS_URL, Settings, from_env

__all__ = ["Publication", "PublishError", "Publisher", "PushResult", "SyncPublisher", "encode_payload"]

#: Longest user id or topic name accepted (the server's own topic limit).
MAX_NAME_CHARS = 256
_T = TypeVar("_T")


class PublishError(StickywsError, ValueError):
    """A push or publication that was not made; ``code`` says why (see the module docstring)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def encode_payload(data: Any, max_bytes: int) -> str:
    """``data`` as compact JSON text, or :class:`PublishError` (``bad_data``, ``too_large``)."""
    try:
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise PublishError("bad_data", f"data is not JSON: {exc}") from None
    size = len(text.encode())
    if size > max_bytes:
        raise PublishError("too_large", f"data is {size} bytes of JSON; the limit is {max_bytes} (max_publish_bytes)")
    return text


def _check_name(kind: str, value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_NAME_CHARS:
        raise PublishError(f"bad_{kind}", f"{kind} must be a non-empty string of at most {MAX_NAME_CHARS} characters")
    return value


class PublishTarget(Sessions, Topics, Protocol):
    """What a publisher needs of a registry: pushes to users and topic publications (a
    :class:`~stickyws.registry.redis_store.RedisStore`, or any :class:`~stickyws.registry.interfaces.Registry`)."""

    async def close(self) -> None:
        """Release connections (idempotent)."""
        ...


class Publisher:
    """Asynchronous publisher (see the module docstring). ``settings`` default to the environment's
    ``STICKYWS_*`` values, so retention and size limits match the servers of the same deployment."""

    def __init__(
        self,
        url: str | None = None,
        *,
        registry: PublishTarget | None = None,
        settings: Settings | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if env is None else env
        self.settings = settings or from_env(env)
        if registry is None:
            url = url or env.get(ENV_REDIS_URL)
            if not url:
                raise PublishError("registry_unavailable", f"no registry URL: pass one or set {ENV_REDIS_URL}")
            # Imported only without a given registry: redis is an optional dependency (the server extra).
            from stickyws.registry.redis_store import RedisStore

            registry = RedisStore(
                url,
                pool_size=8,
                ack_wait_replicas=self.settings["ack_wait_replicas"],
                ack_wait_timeout_ms=self.settings["ack_wait_timeout_ms"],
            )
            self._owns_registry = True
        else:
            self._owns_registry = False
        self.registry = registry

    async def send_to_user(
        self, user_id: str, data: Any, *, require_session: bool = False, key: str | None = None
    ) -> PushResult:
        """Append ``data`` to ``user_id``'s session and deliver it; returns the assigned seq.

        For a user with no session (unknown, or expired after ``session_ttl_s``) nothing is stored
        and the result's status is ``no_session`` (or :class:`PublishError` with ``require_session``).
        ``key``: an idempotency key (any string up to 256 characters). After ``registry_unavailable``
        the push may or may not have been stored; send it again with the same key and it is delivered
        once: a key already used for this user returns the seq it got (``duplicate``).
        """
        user_id = _check_name("user", user_id)
        if key is not None:
            key = _check_name("key", key)
        payload = encode_payload(data, self.settings["max_publish_bytes"])
        try:
            result = await self.registry.push(user_id=user_id, payload=payload, key=key)
        except RegistryUnavailable as exc:
            raise PublishError("registry_unavailable", str(exc)) from None
        if require_session and result.status == "no_session":
            raise PublishError("no_session", f"user {user_id!r} has no session (unknown or expired)")
        return result

    async def publish(self, topic: str, data: Any) -> Publication:
        """Append ``data`` to ``topic``'s log and deliver it to every subscriber; returns offset and epoch."""
        topic = _check_name("topic", topic)
        payload = encode_payload(data, self.settings["max_publish_bytes"])
        try:
            return await self.registry.publish_topic(
                topic=topic,
                payload=payload,
                retention_count=self.settings["topic_retention_count"],
                retention_s=self.settings["topic_retention_s"],
                epoch_if_new=secrets.token_hex(4),
            )
        except RegistryUnavailable as exc:
            raise PublishError("registry_unavailable", str(exc)) from None

    async def close(self) -> None:
        """Release the registry connections this publisher opened (idempotent)."""
        if self._owns_registry:
            await self.registry.close()

    async def __aenter__(self) -> Publisher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class SyncPublisher:
    """:class:`Publisher` for code without an event loop: one private loop in a daemon thread."""

    def __init__(self, url: str | None = None, *, settings: Settings | None = None) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="stickyws-publisher", daemon=True)
        self._thread.start()
        try:
            self._pub = self._run(self._make(url, settings))
        except BaseException:
            self._stop_loop()
            raise

    async def _make(self, url: str | None, settings: Settings | None) -> Publisher:
        return Publisher(url, settings=settings)

    def _run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def send_to_user(
        self, user_id: str, data: Any, *, require_session: bool = False, key: str | None = None
    ) -> PushResult:
        """See :meth:`Publisher.send_to_user`."""
        return self._run(self._pub.send_to_user(user_id, data, require_session=require_session, key=key))

    def publish(self, topic: str, data: Any) -> Publication:
        """See :meth:`Publisher.publish`."""
        return self._run(self._pub.publish(topic, data))

    def close(self) -> None:
        """Close the registry connections and stop the loop thread (idempotent)."""
        if self._loop.is_closed():
            return
        self._run(self._pub.close())
        self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def __enter__(self) -> SyncPublisher:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
