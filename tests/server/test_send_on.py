"""Revision, avoid and send-on: the heartbeat and drain frames carry the revision; a handshake avoiding this
server's revision is sent on while another revision is live, and admitted otherwise."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from stickyws import keys, protocol
from stickyws.localproc import free_port
from stickyws.registry.errors import RegistryUnavailable
from stickyws.registry.memory import InMemoryRegistry
from stickyws.server.identity import resolve_revision, revision_from_metadata
from stickyws.server.send_on import RevisionView, other_revision_live, wants_send_on
from stickyws.server.upkeep import heartbeat_body
from stickyws.settings import Settings
from tests.server.helpers import connect, eventually, fast, recv_json, run, server, token, url


def _beat(server_id: str, status: str, revision: str) -> str:
    return heartbeat_body(server_id, 0, status, 1, revision)


def _lines(rs: Any) -> list[dict[str, Any]]:
    """Every JSON line the server's metrics wrote (audit and EMF)."""
    return [json.loads(line) for line in rs.core.metrics.out.getvalue().splitlines()]


def _audit(rs: Any, event: str) -> list[dict[str, Any]]:
    lines = _lines(rs)
    return [line for line in lines if line.get("event") == event]


async def _handshake(http: aiohttp.ClientSession, rs: Any, user: str, avoid: str) -> aiohttp.ClientWebSocketResponse:
    return await http.ws_connect(url(rs, token=token(user), avoid=avoid), protocols=[protocol.SUBPROTOCOL])


def test_other_revision_live_counts_serving_servers_of_another_non_empty_revision() -> None:
    """Only a heartbeat that is serving and names another, non-empty revision counts; unreadable ones do not."""
    assert other_revision_live({"b": _beat("b", "serving", "2")}, "1")
    for beats in (
        {},
        {"a": _beat("a", "serving", "1")},
        {"b": _beat("b", "draining", "2")},
        {"b": _beat("b", "stopped", "2")},
        {"b": _beat("b", "serving", "")},
        {"b": '{"serverId":"b","status":"serving"}'},
        {"b": "not json"},
        {"b": "[1]"},
    ):
        assert not other_revision_live(beats, "1"), beats
    assert wants_send_on("1", "1")
    assert not wants_send_on("", "")
    assert not wants_send_on("1", "2")
    assert not wants_send_on("", "1")


def test_the_revision_view_reads_once_per_cache_time_and_shares_a_read() -> None:
    """Handshakes within CACHE_S share one read of the heartbeats; the next read comes after it; a registry
    outage reads as no other revision."""
    now = [100.0]
    calls: list[float] = []
    answer: dict[str, str] | None = {"b": _beat("b", "serving", "2")}

    async def read() -> dict[str, str]:
        calls.append(now[0])
        await asyncio.sleep(0.01)
        if answer is None:
            raise RegistryUnavailable("down")
        return answer

    async def go() -> None:
        nonlocal answer
        view = RevisionView(read, clock=lambda: now[0])
        assert await asyncio.gather(*(view.other_live("1") for _ in range(5))) == [True] * 5
        assert len(calls) == 1
        now[0] += 0.9
        assert await view.other_live("1")
        assert len(calls) == 1
        now[0] += 0.2
        answer = None
        assert not await view.other_live("1")
        assert (len(calls), view.reads) == (2, 2)

    run(go())


def test_a_handshake_avoiding_this_revision_is_sent_on_while_another_revision_serves() -> None:
    """Revision 1 with a serving revision-2 heartbeat in the registry: a handshake with avoid=1 is upgraded,
    gets only reconnect (send_on, avoid 1, retryAfterMs <= 100) and close 1012; no route is claimed, the
    send-on is counted, and a handshake without avoid is admitted."""
    registry = InMemoryRegistry()

    async def go() -> None:
        await registry.heartbeat("srv-new", _beat("srv-new", "serving", "2"), 30)
        async with server(fast(revision="1"), registry=registry) as rs, aiohttp.ClientSession() as http:
            ws = await _handshake(http, rs, "mover", "1")
            frame = await recv_json(ws)
            assert {k: frame[k] for k in ("type", "reason", "avoid")} == {
                "type": "reconnect", "reason": protocol.RECONNECT_SEND_ON, "avoid": "1"
            }  # fmt: skip
            assert 0 <= frame["retryAfterMs"] <= protocol.SEND_ON_MAX_RETRY_MS
            msg = await ws.receive(timeout=3)
            assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, protocol.CLOSE_SERVICE_RESTART)
            assert await registry.owner("mover") is None
            await eventually(lambda: not rs.core.connections and rs.core.admissions.pending == 0)
            assert [(a["decision"], a["revision"]) for a in _audit(rs, "route")] == [("send_on", "1")]
            flushed = sum(line.get("SendsOn", 0) for line in _lines(rs))  # EMF lines of the heartbeats' flushes
            assert flushed + rs.core.metrics.counters["SendsOn"] == 1
            _, first = await connect(http, rs, "stayer")
            assert first["serverId"] == "srv-a"

    run(go())


@pytest.mark.parametrize(
    ("own", "avoid", "other"),
    [
        ("1", "1", _beat("srv-b", "draining", "2")),  # the other revision is draining: nowhere to go
        ("1", "1", _beat("srv-b", "serving", "1")),  # one revision everywhere: a scale-in
        ("2", "1", _beat("srv-b", "serving", "1")),  # a new server: the client arrived
        ("", "1", _beat("srv-b", "serving", "2")),  # this server has no revision
    ],
)
def test_a_handshake_is_admitted_when_no_other_revision_is_live_or_it_avoids_another(
    own: str, avoid: str, other: str
) -> None:
    """avoid names another revision, this server has none, or no live non-draining server runs another
    revision: the handshake is admitted with a connected frame."""
    registry = InMemoryRegistry()

    async def go() -> None:
        await registry.heartbeat("srv-b", other, 30)
        async with server(fast(revision=own), registry=registry) as rs, aiohttp.ClientSession() as http:
            ws = await _handshake(http, rs, "u", avoid)
            assert (await recv_json(ws))["type"] == "connected"
            assert await registry.owner("u") == "srv-a"
            assert _audit(rs, "route")[0]["decision"] == "accept"

    run(go())


def test_the_heartbeat_and_the_drain_frame_carry_the_revision() -> None:
    """A server with revision web:7 writes it in every heartbeat and adds avoid=web:7 to its drain frames;
    one without a revision writes "" and adds no avoid."""

    async def go(revision: str) -> tuple[dict[str, Any], dict[str, Any]]:
        registry = InMemoryRegistry()
        settings = fast(revision=revision, drain_window_s=0.1)
        async with server(settings, registry=registry) as rs, aiohttp.ClientSession() as http:
            ws, _ = await connect(http, rs, "u")
            beat = json.loads((await registry.server_heartbeats())["srv-a"])
            rs.core.begin_drain("test")
            frame = await recv_json(ws)
            await rs.core.wait_drained(3)
        return beat, frame

    beat, frame = run(go("web:7"))
    assert (beat[keys.HEARTBEAT_REVISION], frame["reason"], frame["avoid"]) == ("web:7", "server_draining", "web:7")
    beat, frame = run(go(""))
    assert beat[keys.HEARTBEAT_REVISION] == ""
    assert "avoid" not in frame
    plain = '{"type":"reconnect","reason":"server_draining","retryAfterMs":5}'
    assert protocol.reconnect("server_draining", 5) == plain


def test_the_revision_comes_from_the_setting_else_the_task_metadata_family_and_revision() -> None:
    """The revision setting wins; without it a (loopback) task metadata endpoint gives family:revision; an
    unreachable or absent endpoint gives none."""
    assert revision_from_metadata({"Family": "ws", "Revision": "12"}) == "ws:12"
    assert revision_from_metadata({"Family": "ws"}) == ""

    async def go() -> None:
        async def task(_: web.Request) -> web.Response:
            return web.json_response({"TaskARN": "arn:aws:ecs:eu-west-1:1:task/c/abc", "Family": "ws", "Revision": 3})

        app = web.Application()
        app.router.add_get("/task", task)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        env = {"ECS_CONTAINER_METADATA_URI_V4": f"http://127.0.0.1:{port}"}
        try:
            assert await asyncio.to_thread(resolve_revision, "", env) == "ws:3"
            assert await asyncio.to_thread(resolve_revision, " blue ", env) == "blue"
        finally:
            await runner.cleanup()
        closed = {"ECS_CONTAINER_METADATA_URI_V4": f"http://127.0.0.1:{free_port()}"}
        assert await asyncio.to_thread(resolve_revision, "", closed) == ""
        assert resolve_revision("", {}) == ""

    run(go())
    assert Settings().server.revision == ""
