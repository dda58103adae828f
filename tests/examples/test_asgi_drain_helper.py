"""The ASGI example's drain helper (examples/asgi/stickyws_drain.py) alone, against a real redis-server."""

from __future__ import annotations

import asyncio
import importlib.util
import random
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import redis

from stickyws import keys
from stickyws.drain_notifier import publish
from stickyws.localproc import RedisServer

pytestmark = pytest.mark.redis

HELPER = Path(__file__).resolve().parents[2] / "examples" / "asgi" / "stickyws_drain.py"
SERVER = "task-0a1b2c"
WINDOW_S = 5.0
#: Seconds a test waits for the helper to subscribe or to call back.
WAIT_S = 5.0


def _load_helper() -> ModuleType:
    spec = importlib.util.spec_from_file_location("stickyws_drain", HELPER)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


helper = _load_helper()


def _notice(server_id: str = SERVER, *, age_s: float = 0.0) -> keys.DrainNotice:
    """A notice as the drain notifier issues it, dated ``age_s`` seconds ago."""
    return keys.DrainNotice(server_id, "test", "unit", int((time.time() - age_s) * 1000))


def _store(url: str, notice: keys.DrainNotice) -> None:
    """SET the notice as the notifier does, without publishing it."""
    with redis.Redis.from_url(url) as client:
        client.set(keys.drain_key(notice.server_id), notice.to_json(), ex=keys.DRAIN_NOTICE_TTL_S)


def _notify(url: str, notice: keys.DrainNotice) -> int:
    """SET + PUBLISH with the drain notifier's own code; returns the subscriber count."""
    with redis.Redis.from_url(url) as client:
        return publish(client, notice)


def _subscribers(url: str) -> int:
    with redis.Redis.from_url(url) as client:
        return int(dict(client.pubsub_numsub(keys.drain_key(SERVER)))[keys.drain_key(SERVER).encode()])


async def _until(predicate: Callable[[], bool]) -> None:
    """Poll ``predicate`` every 10 ms; TimeoutError after WAIT_S."""
    async with asyncio.timeout(WAIT_S):
        while not predicate():  # noqa: ASYNC110 - a registry-side condition, polled within the bound
            await asyncio.sleep(0.01)


def _watch(url: str, scenario: Callable[[], Coroutine[Any, Any, None]] | None = None, **options: Any) -> float:
    """Run the helper on ``url`` (after ``scenario`` starts it); returns the window it called back with."""

    async def main() -> float:
        windows: list[float] = []

        async def on_drain(window_s: float) -> None:
            windows.append(window_s)

        watcher = asyncio.create_task(helper.watch_drain(url, SERVER, WINDOW_S, on_drain, **options))
        if scenario is not None:
            await scenario()
        async with asyncio.timeout(WAIT_S):
            await watcher
        assert len(windows) == 1
        return windows[0]

    return asyncio.run(main())


def test_the_helpers_key_and_channel_are_the_contracts() -> None:
    """The helper's key and channel name is stickyws.keys.drain_key for any server id."""
    for server_id in (SERVER, "s1", "ip-10-0-1-7-4242"):
        assert helper.drain_key(server_id) == keys.drain_key(server_id)


def test_a_published_notice_calls_back_once_with_the_whole_window(redis_url: str) -> None:
    """A notice published while the helper listens calls back once with the whole window (quiet rechecks off)."""
    subscribers: list[int] = []

    async def scenario() -> None:
        await _until(lambda: _subscribers(redis_url) == 1)
        subscribers.append(_notify(redis_url, _notice()))

    window_s = _watch(redis_url, scenario, recheck_s=60)
    assert subscribers == [1]
    assert WINDOW_S - 0.5 < window_s <= WINDOW_S


def test_a_notice_stored_before_start_is_read_and_its_age_shortens_the_window(redis_url: str) -> None:
    """A notice stored 2 s before the helper starts is read from the key; the callback gets the 3 s left."""
    _store(redis_url, _notice(age_s=2.0))
    window_s = _watch(redis_url, recheck_s=60)
    assert WINDOW_S - 2.5 < window_s <= WINDOW_S - 2.0


def test_other_servers_notices_and_malformed_text_are_ignored(redis_url: str) -> None:
    """Another server's notice, other JSON and non-JSON on the channel are ignored; this server's notice counts."""

    async def scenario() -> None:
        await _until(lambda: _subscribers(redis_url) == 1)
        with redis.Redis.from_url(redis_url) as client:
            channel = keys.drain_key(SERVER)
            for text in (_notice("another-task").to_json(), '{"type":"reconnect"}', "not json", "[]"):
                assert client.publish(channel, text) == 1
        # Dated 2 s back: a callback from one of the texts above would carry the whole window.
        _notify(redis_url, _notice(age_s=2.0))

    window_s = _watch(redis_url, scenario, recheck_s=60)
    assert WINDOW_S - 2.5 < window_s <= WINDOW_S - 2.0


def test_a_notice_published_while_the_subscription_was_down_is_read_on_resubscribe(redis_url: str) -> None:
    """The helper's subscription is killed, the notice goes out to no subscriber, and the helper still acts on it."""
    subscribers: list[int] = []

    async def scenario() -> None:
        await _until(lambda: _subscribers(redis_url) == 1)
        # Blocking calls: the helper cannot run between the kill and the publish.
        with redis.Redis.from_url(redis_url) as client:
            assert client.client_kill_filter(_type="pubsub") == 1
        subscribers.append(_notify(redis_url, _notice()))

    window_s = _watch(redis_url, scenario, recheck_s=60, retry_s=0.1)
    assert subscribers == [0]
    assert WINDOW_S - 0.5 < window_s <= WINDOW_S


def test_a_registry_that_is_down_at_start_is_retried(make_redis: Callable[[], RedisServer]) -> None:
    """The helper started while Redis is down keeps retrying and acts on the notice once Redis is back."""
    server = make_redis()
    server.stop()

    async def scenario() -> None:
        await asyncio.sleep(0)  # the helper's first attempt runs (and is refused) before Redis is back
        server.start()
        _notify(server.url, _notice())

    window_s = _watch(server.url, scenario, recheck_s=60, retry_s=0.1)
    assert WINDOW_S - 0.5 < window_s <= WINDOW_S


def test_cancelling_the_helper_closes_its_connections(redis_url: str) -> None:
    """A helper cancelled before any notice leaves no connection of its own open on the registry."""

    def others(client: redis.Redis) -> set[str]:
        own = str(client.client_id())
        return {c["id"] for c in client.client_list() if c["id"] != own}

    async def main() -> None:
        async def on_drain(window_s: float) -> None:
            raise AssertionError("no notice was sent")

        watcher = asyncio.create_task(helper.watch_drain(redis_url, SERVER, WINDOW_S, on_drain))
        with redis.Redis.from_url(redis_url) as client:
            # The subscription and the connection that reads the key.
            await _until(lambda: len(others(client) - before) == 2 and _subscribers(redis_url) == 1)
        watcher.cancel()
        with pytest.raises(asyncio.CancelledError):
            await watcher

    with redis.Redis.from_url(redis_url) as client:
        before = others(client)
    asyncio.run(main())
    with redis.Redis.from_url(redis_url) as client:
        assert others(client) - before == set()


def test_notice_age_reads_only_this_servers_notices() -> None:
    """notice_age_s gives the age of this server's notice (0 when undated) and None for anything else."""
    now_ms = int(time.time() * 1000)
    assert helper.notice_age_s(keys.DrainNotice(SERVER, "t", "", now_ms - 3000).to_json(), SERVER) == pytest.approx(
        3.0, abs=0.5
    )
    assert helper.notice_age_s(f'{{"type":"drain","serverId":"{SERVER}"}}', SERVER) == 0.0
    for text in (None, b"", "{", "[]", '{"type":"drain"}', _notice("another").to_json(), '{"type":"x"}'):
        assert helper.notice_age_s(text, SERVER) is None


def test_spread_delays_put_one_moment_in_each_slot_of_the_window() -> None:
    """spread_delays gives count increasing moments, the i-th inside the i-th of count equal slots of the window."""
    rng = random.Random(7)
    delays = helper.spread_delays(8, 2.0, rng)
    assert len(delays) == 8
    for i, at_s in enumerate(delays):
        assert i * 0.25 <= at_s < (i + 1) * 0.25
    assert helper.spread_delays(0, 2.0, rng) == []
    assert helper.spread_delays(3, 0.0, rng) == [0.0, 0.0, 0.0]
