"""The Kubernetes preStop drain: `stickyws server drain-self` against a real server on loopback.

The server waits ``pre_stop_delay_s`` serving, drains (source ``k8s-prestop``) as for any other stop
cause, and answers when the drain has ended; only loopback peers are answered.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

import aiohttp
import pytest

from stickyws import protocol
from stickyws.localproc import free_port, stop_pid, wait_for_port
from stickyws.server import prestop
from stickyws.server.prestop import PRESTOP_PATH, SOURCE, DrainSelfResult, drain_after_delay, drain_self
from stickyws.server.ws_connection import WebSocketConnection
from tests.server.helpers import SECRET, connect, eventually, fast, recv_json, run, server, token, url


async def _expect_reconnect_then_1012(ws: aiohttp.ClientWebSocketResponse, timeout_s: float = 5.0) -> float:
    """Read the drain's reconnect frame and the 1012 close; returns when the frame came (loop time)."""
    frame = await recv_json(ws, timeout_s=timeout_s)
    at = asyncio.get_running_loop().time()
    assert (frame["type"], frame["reason"]) == ("reconnect", "server_draining")
    msg = await ws.receive(timeout=3)
    assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, protocol.CLOSE_SERVICE_RESTART)
    return at


def _audit(rs: Any) -> list[dict[str, Any]]:
    return [json.loads(line) for line in rs.core.metrics.out.getvalue().splitlines() if line.startswith("{")]


def test_drain_self_keeps_serving_for_the_delay_then_drains_and_answers_when_drained() -> None:
    """During the 1 s delay the server admits a new client and answers /health 200; then every client gets
    reconnect + 1012 and the request returns 200 with source k8s-prestop, the delay waited and 0 left."""

    async def go() -> None:
        settings = fast(pre_stop_delay_s=1, deregistration_propagation_s=1, drain_window_s=0.5)
        async with server(settings) as rs, aiohttp.ClientSession() as http:
            early = [(await connect(http, rs, f"early-{i}"))[0] for i in range(3)]
            loop = asyncio.get_running_loop()
            asked = loop.time()
            request = asyncio.create_task(asyncio.to_thread(drain_self, rs.port, 10.0))
            late, _ = await connect(http, rs, "late")  # the load balancer may still send new clients
            async with http.get(url(rs, "/health")) as resp:
                assert resp.status == 200
            assert not rs.core.draining
            told = [await _expect_reconnect_then_1012(ws) for ws in [*early, late]]
            assert min(told) - asked >= 1.0  # nobody was told before the delay ran out
            result = await request
            assert result.status == 200
            assert (result.source, result.left) == (SOURCE, 0)
            assert 1.0 <= result.delay_s < 1.5
            assert result.drained_s <= 0.5 + 1.0  # the window plus the drain's close grace
            starts = [e for e in _audit(rs) if e.get("event") == "drain_start"]
            assert [(e["source"], e["sigterm"]) for e in starts] == [(SOURCE, False)]

    run(go())


def test_drain_self_during_a_running_drain_waits_for_that_drain() -> None:
    """A drain already begun (here a drain notice) ends the delay at once: the request waits for that drain
    and reports its source; no second drain starts."""

    async def go() -> None:
        async with server(fast(pre_stop_delay_s=30, drain_window_s=0.3)) as rs, aiohttp.ClientSession() as http:
            ws, _ = await connect(http, rs, "alice")
            rs.core.begin_drain("twin", "drain notice")
            started = time.monotonic()
            result = await asyncio.to_thread(drain_self, rs.port, 10.0)
            assert time.monotonic() - started < 5.0  # not the 30 s delay
            assert (result.status, result.source, result.left) == (200, "twin", 0)
            await _expect_reconnect_then_1012(ws, timeout_s=1)
            assert [e["source"] for e in _audit(rs) if e.get("event") == "drain_start"] == ["twin"]

    run(go())


def test_the_grace_period_bounds_the_wait() -> None:
    """A drain that outlasts the grace period (a 30 s window, grace 1.5 s) is answered 504 at the grace
    period, with the connections still open; the drain itself goes on."""

    async def go() -> None:
        async with server(fast(drain_window_s=30, shutdown_timeout_s=3)) as rs, aiohttp.ClientSession() as http:
            clients = [(await connect(http, rs, f"u{i}"))[0] for i in range(3)]
            loop = asyncio.get_running_loop()
            started = loop.time()
            result = await drain_after_delay(rs.core, 0.5, 1.5)
            assert 1.45 <= loop.time() - started < 2.0
            assert result.status == 504
            assert result.source == SOURCE
            assert 0.9 <= result.drained_s < 1.5
            assert result.left >= 2  # three connections over 30 s: at most the first was told within 1 s
            assert len(clients) == 3
            assert rs.core.draining
            assert "grace period ran out" in result.line()

    run(go())


class _FakeTransport:
    """Just enough of an asyncio transport for one plain request from ``peer``."""

    def __init__(self, peer: str) -> None:
        self.peer = peer
        self.written = b""
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return (self.peer, 40000) if name == "peername" else default

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


@pytest.mark.parametrize("peer", ["10.0.1.17", "192.168.1.2", "::ffff:10.0.0.1", "2001:db8::1"])
def test_a_peer_that_is_not_loopback_gets_403_and_no_drain(peer: str) -> None:
    """Through the load balancer the peer is never loopback: the request is refused 403 and nothing drains."""

    async def go() -> None:
        async with server() as rs:
            from stickyws.server.ws_adapter import ListenerContext

            ctx = ListenerContext(rs.core, lambda: True)
            conn = WebSocketConnection(ctx)
            transport = _FakeTransport(peer)
            conn.connection_made(transport)  # type: ignore[arg-type]
            conn.data_received(f"POST {PRESTOP_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode())
            head, _, body = transport.written.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 403 ")
            assert json.loads(body)["error"] == "forbidden"
            assert transport.closed
            await asyncio.sleep(0.1)
            assert not rs.core.draining

    run(go())


@pytest.mark.parametrize(
    ("address", "loopback"),
    [("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("::ffff:127.0.0.1", True),
     ("10.0.0.1", False), ("::ffff:10.0.0.1", False), ("fe80::1%eth0", False), ("", False), (None, False),
     ("not-an-ip", False)],
)  # fmt: skip
def test_loopback_peers(address: str | None, loopback: bool) -> None:
    """127/8, ::1 and their IPv4-mapped form are loopback; anything else, or no address, is not."""
    assert prestop.is_loopback_peer(address) is loopback


def test_only_post_starts_the_drain() -> None:
    """GET on the preStop path is 405 (Allow: POST) and drains nothing: a probe cannot stop a server."""

    async def go() -> None:
        async with server() as rs, aiohttp.ClientSession() as http:
            async with http.get(url(rs, PRESTOP_PATH)) as resp:
                assert (resp.status, resp.headers["Allow"]) == (405, "POST")
            assert not rs.core.draining

    run(go())


def _serve(env_extra: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "STICKYWS_JWT_SECRET": SECRET, **env_extra}
    return subprocess.Popen(
        [sys.executable, "-m", "stickyws.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _drain_self_cmd(env_extra: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **env_extra}
    cmd = [sys.executable, "-m", "stickyws.cli", "server", "drain-self", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30, check=False)


def test_the_command_drains_the_served_process_which_then_exits_0_at_once_on_sigterm() -> None:
    """`stickyws server drain-self` in the server's environment (STICKYWS_PORT): one line, exit 0, the client
    moved; the SIGTERM Kubernetes sends next ends the drained server at once with exit code 0."""
    port = free_port()
    env = {"STICKYWS_PORT": str(port), "STICKYWS_PRE_STOP_DELAY_S": "1", "STICKYWS_DEREGISTRATION_PROPAGATION_S": "1",
           "STICKYWS_DRAIN_WINDOW_S": "0.3"}  # fmt: skip
    proc = _serve(env, port)
    try:
        wait_for_port(port, 10)

        async def go() -> subprocess.CompletedProcess[str]:
            async with aiohttp.ClientSession() as http:
                ws = await http.ws_connect(f"http://127.0.0.1:{port}/ws?token={token('alice')}")
                assert (await recv_json(ws))["type"] == "connected"
                done = asyncio.create_task(asyncio.to_thread(_drain_self_cmd, env))
                await _expect_reconnect_then_1012(ws)
                return await done

        done = run(go())
        assert done.returncode == 0, done.stderr
        assert done.stderr == ""
        lines = done.stdout.splitlines()
        assert len(lines) == 1
        assert lines[0].startswith(f"drain-self: drained ({SOURCE}) in ")
        assert "after a 1 s preStop delay, 0 connection(s) left" in lines[0]
        assert proc.poll() is None  # drained, still up: SIGTERM ends it
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
        assert time.monotonic() - t0 < 1.5
        assert "Traceback" not in (proc.stderr.read().decode() if proc.stderr else "")
    finally:
        stop_pid(proc)


def test_the_command_without_a_server_says_what_to_check_in_one_line() -> None:
    """No server on the port: exit 2 and one `stickyws: drain-self: ...` line naming the port, no traceback."""
    port = free_port()
    done = _drain_self_cmd({}, "--port", str(port))
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"stickyws: drain-self: no server answers on 127.0.0.1:{port} ")
    assert "--port (or STICKYWS_PORT)" in lines[0]


def test_the_result_line_and_body_round_trip() -> None:
    """The response body reads back to the same result, and the line says source, time, delay and what is left."""
    result = DrainSelfResult(200, SOURCE, 15.0, 3.25, 0)
    assert DrainSelfResult.from_json(200, json.loads(json.dumps(result.as_json()))) == result
    line = "drain-self: drained (k8s-prestop) in 3.2 s after a 15 s preStop delay, 0 connection(s) left"
    assert result.line() == line


def test_the_request_may_set_the_delay_and_a_bad_one_is_refused_400() -> None:
    """`?delay_s=0` (drain-self --delay-s 0) drains at once despite a 30 s setting; a delay that is not a number
    from 0 to the grace period is refused 400 and drains nothing."""

    async def go() -> None:
        async with server(fast(pre_stop_delay_s=30, drain_window_s=0.2)) as rs, aiohttp.ClientSession() as http:
            for bad in ("soon", "-1", "nan", "91"):
                async with http.post(url(rs, PRESTOP_PATH, delay_s=bad)) as resp:
                    body = await resp.json()
                    assert (resp.status, body["error"]) == (400, "bad_request")
                    assert "delay_s must be" in body["message"]
            assert not rs.core.draining
            ws, _ = await connect(http, rs, "alice")
            result = await asyncio.to_thread(drain_self, rs.port, 10.0, delay_s=0)
            assert (result.status, result.source, result.delay_s, result.left) == (200, SOURCE, 0.0, 0)
            await _expect_reconnect_then_1012(ws, timeout_s=1)

    run(go())


def test_a_server_stopping_during_the_delay_ends_the_wait() -> None:
    """The server stops (SIGTERM elsewhere, a crash) during a 30 s delay: the request ends at once, saying the
    server exited, and no drain was started by it."""

    async def go() -> None:
        async with server(fast(pre_stop_delay_s=30)) as rs:
            request = asyncio.create_task(asyncio.to_thread(drain_self, rs.port, 10.0))
            await eventually(lambda: len(rs._ctx.connections) == 1 if rs._ctx else False)  # the request waits
            started = time.monotonic()
            await rs.stop()
            result = await request
            assert time.monotonic() - started < 1.0
            assert (result.status, result.source, result.left) == (200, prestop.SERVER_EXITED, 0)
            assert result.line().startswith("drain-self: the server closed the request after ")
            assert not rs.core.draining

    run(go())
