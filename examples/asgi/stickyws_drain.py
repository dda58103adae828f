"""Act on the stickyws drain notice in any asyncio (ASGI) app: move clients before the ALB cuts them.

Contract (docs/drain-contract.md): when ECS starts to stop a task, a JSON notice is SET under, and
PUBLISHed on, ``ws:drain:<serverId>``. :func:`watch_drain` subscribes to that channel, reads the key
each time the subscription is (re)established and after every ``recheck_s`` without a message, and
awaits ``on_drain(window_s)`` once, with what the notice's age leaves of the drain window. The app
then closes each WebSocket at one of :func:`spread_delays` (a reconnect frame, then close 1012).
Standard library and ``redis.asyncio`` only: copy this file into your app.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable

import redis.asyncio as redis

log = logging.getLogger("stickyws_drain")


def drain_key(server_id: str) -> str:
    """Key and channel of ``server_id``'s drain notice."""
    return f"ws:drain:{server_id}"


def notice_age_s(text: str | bytes | None, server_id: str) -> float | None:
    """Seconds since ``text``, a drain notice for ``server_id``, was issued (0 if undated); else ``None``."""
    try:
        body = json.loads(text) if text else None
        if isinstance(body, dict) and body.get("type") == "drain" and body.get("serverId") == server_id:
            issued_ms = int(body.get("issuedAtMs") or 0)
            return max(0.0, time.time() - issued_ms / 1000) if issued_ms else 0.0
    except (ValueError, TypeError):
        pass
    return None


def spread_delays(count: int, window_s: float, rng: random.Random | None = None) -> list[float]:
    """``count`` increasing moments in ``[0, window_s)``: one at a random point of each of ``count`` equal slots."""
    rng = rng or random.Random()
    slot = window_s / count if count else 0.0
    return [(i + rng.random()) * slot for i in range(count)]


async def watch_drain(
    redis_url: str, server_id: str, window_s: float, on_drain: Callable[[float], Awaitable[None]],
    *, recheck_s: float = 5.0, retry_s: float = 1.0,
) -> None:  # fmt: skip
    """Wait for this server's drain notice, then await ``on_drain(seconds left of window_s)`` once and return.

    Redis errors are retried every ``retry_s`` seconds; cancel the task to stop watching.
    """
    key, age, failing = drain_key(server_id), None, False
    client = redis.Redis.from_url(redis_url)
    try:
        while age is None:
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(key)
                    failing = False
                    while age is None:
                        message = await pubsub.get_message(timeout=recheck_s)
                        if message is not None and message["type"] == "message":
                            age = notice_age_s(message["data"], server_id)
                        else:  # (re)subscribed or quiet: a notice written meanwhile is in the key
                            age = notice_age_s(await client.get(key), server_id)
            except (redis.RedisError, OSError) as exc:
                if not failing:  # once per outage
                    log.warning("cannot read drain notices on %s (%s): retrying every %g s", key, exc, retry_s)
                failing = True
                await asyncio.sleep(retry_s)
    finally:
        await client.aclose()
    await on_drain(max(0.0, window_s - age))
