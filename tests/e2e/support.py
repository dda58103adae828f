"""Settings and helpers of the end-to-end tests (also used by tests/twin): drive many clients in one loop.

The twin's settings are short on purpose and all inside the AWS ranges; only the health-check
interval and timeout are shortened by the twin's time scale (5 s x 0.05 = 250 ms).
"""

from __future__ import annotations

import asyncio
import random
import shutil
from collections.abc import Coroutine
from typing import Any, TypeVar

import aiohttp

from stickyws.settings import Settings

T = TypeVar("T")

#: Settings of the shared twin: tunnel timeout 3 s with pings every 1 s, deregistration delay 3 s
#: with a 1.5 s drain window, health checks every 250 ms (scaled), client backoff 250 ms .. 5 s.
E2E_SETTINGS = Settings().with_overrides(
    {
        "idle_timeout_s": 3,
        "ping_interval_s": 1,
        "ping_timeout_s": 2,
        "deregistration_delay_s": 3,
        "drain_window_s": 1.5,
        "shutdown_timeout_s": 2,
        "stop_timeout_s": 3,
        "health_check_interval_s": 5,
        "health_check_timeout_s": 2,
        "healthy_threshold_count": 2,
        "unhealthy_threshold_count": 2,
        "heartbeat_interval_s": 0.5,
        "heartbeat_ttl_s": 2,
        "routing_ttl_s": 120,
        "session_ttl_s": 600,
        "reconnect_base_ms": 250,
        "reconnect_cap_s": 5,
    }
)
TIME_SCALE = 0.05
SERVERS = 3


def require_binaries() -> None:
    """Fail (not skip) with the fix when the twin's real parts are missing."""
    missing = [b for b in ("haproxy", "redis-server") if shutil.which(b) is None]
    assert not missing, f"missing {missing}: run make system-deps"


def run(coro: Coroutine[Any, Any, T], timeout_s: float) -> T:
    """Run ``coro`` in a fresh event loop, bounded by ``timeout_s``."""

    async def bounded() -> T:
        async with asyncio.timeout(timeout_s):
            return await coro

    return asyncio.run(bounded())


def client_session() -> aiohttp.ClientSession:
    """One aiohttp session for many clients: no connection limit, no shared cookie jar."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), cookie_jar=aiohttp.DummyCookieJar())


def registry_client(url: str) -> Any:
    """A ``decode_responses`` client of the registry at ``url``: ``RedisCluster`` on a cluster (each key on
    its slot's primary), else ``Redis``."""
    import redis

    single = redis.Redis.from_url(url, decode_responses=True, socket_timeout=5)
    if int(single.info("cluster").get("cluster_enabled", 0)) != 1:
        return single
    single.close()
    return redis.RedisCluster.from_url(url, decode_responses=True, socket_timeout=5)


def session_field(registry: Any, client: Any, name: str) -> str | None:
    """Field ``name`` of ``client``'s session in the registry (None unless the stored session is the client's)."""
    import jwt

    from stickyws import keys

    user = jwt.decode(client.token, options={"verify_signature": False})["sub"]
    sid, value = registry.hmget(keys.session_key(user), ["sid", name])
    return value if sid == client.session_id else None


def started_clients(twin: Any, session: aiohttp.ClientSession, settings: Settings, user_prefix: str, count: int,
                    rng: random.Random) -> list[Any]:  # fmt: skip
    """``count`` reference clients of users ``{user_prefix}{i}`` through ``twin``, started (not yet connected)."""
    from stickyws.client.backoff import Backoff
    from stickyws.client.connection import StickyClient

    clients = [
        StickyClient(twin.url, twin.token(f"{user_prefix}{i}"), backoff=Backoff.from_settings(settings),
                     session=session, rng=random.Random(rng.random()))
        for i in range(count)
    ]  # fmt: skip
    for c in clients:
        c.start()
    return clients


async def send_numbered(client: Any, stop: asyncio.Event, rng: random.Random, every_s: float) -> None:
    """Send a numbered message every ``every_s`` (from a random start within it) until ``stop`` is set."""
    await asyncio.sleep(rng.uniform(0, every_s))
    while not stop.is_set():
        client.send({"n": client.outbox.next_id})
        await asyncio.sleep(every_s)
