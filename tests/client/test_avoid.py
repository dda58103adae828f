"""The client carries a drain's `avoid` into its next handshake, drops the sticky cookies, and gives up
avoiding after MAX_AVOID_HOPS sends-on in a row."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

from stickyws import protocol
from stickyws.client.avoid import Avoid
from stickyws.client.backoff import Backoff
from stickyws.client.connection import StickyClient
from stickyws.client.cookies import CookieJar
from stickyws.localproc import free_port

DRAIN_AVOID = {"type": "reconnect", "reason": protocol.RECONNECT_DRAINING, "retryAfterMs": 0, "avoid": "web:1"}
SEND_ON = {"type": "reconnect", "reason": protocol.RECONNECT_SEND_ON, "retryAfterMs": 0, "avoid": "web:1"}
#: In a script: close the connection with 1012 here.
CLOSE: dict[str, Any] = {}


def _connected(n: int) -> dict[str, Any]:
    return {"type": "connected", "serverId": f"fake-{n}", "sessionId": "sess", "resumeToken": "sess.mac",
            "resumed": n > 1, "lastClientId": 0, "lastServerSeq": 0, "subscriptions": []}  # fmt: skip


@asynccontextmanager
async def scripted(script: Callable[[int], list[dict[str, Any]]]) -> AsyncIterator[tuple[str, list[web.Request]]]:
    """A stickyws.v1 endpoint on a free loopback port: the n-th handshake (from 1) gets an ``AWSALB=s<n>``
    cookie on the 101 and ``script(n)``'s frames, where the item :data:`CLOSE` closes with 1012 (else the
    connection stays open); yields its URL and the handshakes seen."""
    seen: list[web.Request] = []

    async def ws_route(request: web.Request) -> web.WebSocketResponse:
        seen.append(request)
        ws = web.WebSocketResponse(protocols=(protocol.SUBPROTOCOL,))
        ws.set_cookie("AWSALB", f"s{len(seen)}", path="/")
        await ws.prepare(request)
        for frame in script(len(seen)):
            if frame is CLOSE:
                await ws.close(code=protocol.CLOSE_SERVICE_RESTART)
                return ws
            await ws.send_json(frame)
        async for _ in ws:
            pass
        return ws

    app = web.Application()
    app.router.add_get("/ws", ws_route)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"ws://127.0.0.1:{port}/ws", seen
    finally:
        await runner.cleanup()


def _client(url: str) -> StickyClient:
    return StickyClient(url, "t", backoff=Backoff(0.01, 0.02), connect_timeout_s=5)


def test_avoid_is_set_by_a_drain_frame_counted_by_sends_on_and_ended_by_connected() -> None:
    """A drain frame with avoid sets it; each send-on is one hop; the MAX_AVOID_HOPS-th ends the avoiding,
    as does a connected frame or a reconnect frame without avoid."""
    avoid = Avoid()
    avoid.on_reconnect_frame(DRAIN_AVOID)
    assert (avoid.revision, avoid.hops, avoid.query()) == ("web:1", 0, {"avoid": "web:1"})
    for hop in range(1, protocol.MAX_AVOID_HOPS):
        avoid.on_reconnect_frame(SEND_ON)
        assert (avoid.revision, avoid.hops) == ("web:1", hop)
    avoid.on_reconnect_frame(SEND_ON)
    assert (avoid.revision, avoid.hops, avoid.query()) == ("", protocol.MAX_AVOID_HOPS, {})
    avoid.on_reconnect_frame(DRAIN_AVOID)
    assert (avoid.revision, avoid.hops) == ("web:1", 0)
    avoid.on_connected()
    assert (avoid.revision, avoid.hops) == ("", 0)
    avoid.on_reconnect_frame(DRAIN_AVOID)
    avoid.on_reconnect_frame({"type": "reconnect", "reason": protocol.RECONNECT_DRAINING, "retryAfterMs": 0})
    assert (avoid.revision, avoid.hops) == ("", 0)
    avoid.on_reconnect_frame({**DRAIN_AVOID, "avoid": "x" * (protocol.MAX_AVOID_CHARS + 1)})
    assert avoid.revision == ""


def test_drop_sticky_forgets_only_the_load_balancer_cookies() -> None:
    """AWSALB, AWSALBCORS, AWSALBAPP-0 and AWSALBTG go; the application's own cookie stays."""
    jar = CookieJar(clock=lambda: 0.0)
    url = "ws://example.com/ws"
    jar.update(url, ["AWSALB=a", "AWSALBCORS=a", "AWSALBAPP-0=b", "AWSALBTG=c", "SESSION=keep"])
    assert jar.drop_sticky(url) == ["AWSALB", "AWSALBAPP-0", "AWSALBCORS", "AWSALBTG"]
    assert jar.cookies(url) == {"SESSION": "keep"}


def test_the_client_avoids_after_a_drain_drops_the_cookie_and_stops_avoiding_after_eight_sends_on() -> None:
    """A drain frame naming web:1: the next MAX_AVOID_HOPS handshakes carry avoid=web:1 and no AWSALB
    cookie; after that many sends-on in a row the next handshake carries no avoid and is admitted."""
    hops = protocol.MAX_AVOID_HOPS

    def script(n: int) -> list[dict[str, Any]]:
        if n == 1:
            return [_connected(1), DRAIN_AVOID, CLOSE]
        if n <= 1 + hops:
            return [SEND_ON, CLOSE]
        return [_connected(n)]

    async def go() -> None:
        async with scripted(script) as (url, seen):
            client = _client(url)
            async with client:
                await client.wait_for(lambda c: c.stats.connects == 2, timeout_s=10)
            assert [r.query.get("avoid") for r in seen] == [None, *["web:1"] * hops, None]
            assert [r.cookies.get("AWSALB") for r in seen] == [None] * (hops + 2)
            assert (client.stats.sends_on, client.stats.reconnect_frames) == (hops, hops + 1)
            assert client.stats.servers == ["fake-1", f"fake-{hops + 2}"]
            assert client.avoid.revision == ""

    asyncio.run(asyncio.wait_for(go(), 20))


def test_a_drain_without_avoid_adds_none_and_a_close_keeps_the_cookie() -> None:
    """A reconnect frame without avoid adds no avoid (and drops the cookie); a plain 1012 close keeps the
    cookie, so the next handshake sends it back."""

    def script(n: int) -> list[dict[str, Any]]:
        if n == 1:
            drain = {"type": "reconnect", "reason": protocol.RECONNECT_DRAINING, "retryAfterMs": 0}
            return [_connected(1), drain, CLOSE]
        if n == 2:
            return [_connected(2), CLOSE]
        return [_connected(n)]

    async def go() -> None:
        async with scripted(script) as (url, seen):
            client = _client(url)
            async with client:
                await client.wait_for(lambda c: c.stats.connects == 3, timeout_s=10)
            assert [r.query.get("avoid") for r in seen] == [None, None, None]
            assert [r.cookies.get("AWSALB") for r in seen] == [None, None, "s2"]

    asyncio.run(asyncio.wait_for(go(), 20))
