"""`stickyws client`: readable event lines and one-line errors for what the user must fix."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from stickyws.cli import main
from stickyws.client.cli import describe
from stickyws.client.connection import CLOSE_PROTOCOL_ERROR
from stickyws.localproc import free_port


def test_event_lines_are_readable() -> None:
    """Each event kind renders as one fixed-width line with the facts an operator needs."""
    connected = {"server": "s2", "session": "abc", "resumed": True, "last_client_id": 3, "resending": 1}
    line = "connected   server=s2 session=abc resumed=yes lastClientId=3 resending=1"
    assert describe("connected", connected) == line
    assert describe("closed", {"code": 1012, "reason": "x"}) == "closed      1012 (service restart)"
    assert describe("rejected", {"status": 503, "retry_after_s": 1.0}) == "rejected    HTTP 503, Retry-After 1 s"
    assert describe("ack", {"id": 4, "duplicate": True}) == "ack         #4 (duplicate: handled before)"
    assert describe("backoff", {"delay_s": 0.5, "attempt": 2, "reason": "closed 1006 (abnormal closure)"}) == (
        "backoff     0.50 s (attempt 2): closed 1006 (abnormal closure)"
    )


def test_missing_token_and_bad_url_are_one_line_errors(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a token, or with an http:// URL, the command exits 2 with one line saying what to do."""
    monkeypatch.delenv("STICKYWS_TOKEN", raising=False)
    assert main(["client", "ws://127.0.0.1:1/ws"]) == 2
    assert capsys.readouterr().err.strip().startswith("stickyws: no token: pass --token or set STICKYWS_TOKEN")
    assert main(["client", "http://127.0.0.1:1/ws", "--token", "t"]) == 2
    assert "is not a ws:// or wss:// URL" in capsys.readouterr().err


# Against servers that do not speak stickyws.v1: a real websockets server on 127.0.0.1, the client as a process.


@dataclass
class PlainServer:
    """A websockets server on a free loopback port and the close code of each connection it saw end."""

    port: int
    closes: list[int | None] = field(default_factory=list)
    ended: threading.Event = field(default_factory=threading.Event)


@contextmanager
def plain_server(subprotocols: list[str] | None) -> Iterator[PlainServer]:
    """An echo server that never sends a frame of its own, in a thread with its own loop; ``subprotocols``
    as websockets takes them (``None``: it selects none, so it accepts the upgrade without one)."""
    from websockets.asyncio.server import ServerConnection, serve
    from websockets.exceptions import ConnectionClosed

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="plain-ws-server", daemon=True)
    thread.start()
    state = PlainServer(port=0)

    async def echo(ws: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                await ws.send(message)
        state.closes.append(ws.close_code)
        state.ended.set()

    async def start() -> Any:
        return await serve(echo, "127.0.0.1", 0, subprotocols=subprotocols)  # type: ignore[arg-type]

    async def stop() -> None:
        server.close()
        await server.wait_closed()

    server = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=10)
    state.port = server.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        asyncio.run_coroutine_threadsafe(stop(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
    assert not thread.is_alive()


def _client(port: int, *args: str, timeout_s: float = 30) -> tuple[subprocess.CompletedProcess[str], float]:
    """``stickyws client ws://127.0.0.1:PORT/ws --token t ARGS`` as a process; its result and run time."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STICKYWS_")}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "stickyws", "client", f"ws://127.0.0.1:{port}/ws", "--token", "t", *args],
        env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout_s,
    )  # fmt: skip
    return result, time.monotonic() - started


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single ``stickyws: ...`` line on stderr of a client that exited 1 without a traceback."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("stickyws: ")
    return lines[0]


def test_a_server_that_accepts_the_upgrade_without_the_subprotocol_ends_the_client_at_once() -> None:
    """A plain echo server that selects no subprotocol: the client closes with 1002 without waiting for the
    timeout, says what it expected and what to check, and exits 1."""
    with plain_server(subprotocols=None) as server:
        result, took_s = _client(server.port, "--connect-timeout-s", "20")
        assert server.ended.wait(timeout=10)
    line = _one_error_line(result)
    assert line == (
        "stickyws: the server does not speak stickyws.v1: it accepted the WebSocket upgrade without the "
        "stickyws.v1 subprotocol; expected the stickyws.v1 subprotocol in the upgrade answer and a `connected` "
        "frame within 20 s. Check that the URL is a stickyws server's WebSocket endpoint (`stickyws serve` "
        "listens on /ws)"
    )
    assert server.closes == [CLOSE_PROTOCOL_ERROR]
    assert took_s < 15  # well before the 20 s: no wait for a frame that cannot come
    events = [line.split()[1] for line in result.stdout.splitlines() if line[:1] == " "]
    assert events == ["connecting", "closed", "stopped"]  # no backoff: reconnecting cannot fix it
    assert "closed      1002 (protocol error)" in result.stdout
    assert "summary     connections=0" in result.stdout


def test_a_server_that_never_sends_connected_ends_the_client_after_the_connect_timeout() -> None:
    """A server that accepts stickyws.v1 but never sends `connected`: the client gives up after
    --connect-timeout-s, closes with 1002 and exits 1 with one line naming both expectations."""
    with plain_server(subprotocols=["stickyws.v1"]) as server:
        result, took_s = _client(server.port, "--connect-timeout-s", "1.5")
        assert server.ended.wait(timeout=10)
    line = _one_error_line(result)
    assert line.startswith(
        "stickyws: the server does not speak stickyws.v1: it accepted the stickyws.v1 subprotocol but sent no "
        "`connected` frame; expected the stickyws.v1 subprotocol in the upgrade answer and a `connected` frame "
        "within 1.5 s. Check that the URL"
    )
    assert server.closes == [CLOSE_PROTOCOL_ERROR]
    assert 1.5 <= took_s < 12
    assert "closed      1002 (protocol error)" in result.stdout


def test_a_server_that_refuses_the_subprotocol_ends_the_client_with_a_hint() -> None:
    """A server that offers only another subprotocol answers the upgrade 400: the client does not retry,
    and its one error line says such a server answers 400."""
    with plain_server(subprotocols=["other.v1"]) as server:
        result, _ = _client(server.port, "--connect-timeout-s", "5")
    line = _one_error_line(result)
    assert line == (
        "stickyws: handshake answered 400: check the token, Origin and URL; a server that does not offer the "
        "stickyws.v1 subprotocol answers 400 too: check that a stickyws server answers at this URL"
    )
    assert "rejected    HTTP 400" in result.stdout
    assert "backoff" not in result.stdout


def test_a_duration_that_ends_before_any_connection_exits_1_with_the_last_failure() -> None:
    """Nothing listening and --duration 1: the client retries, then exits 1 naming why it never connected."""
    port = free_port()
    result, _ = _client(port, "--duration", "1")
    line = _one_error_line(result)
    assert line.startswith("stickyws: no connection within ")
    assert "(--duration); last attempt: could not connect: " in line
    assert "backoff" in result.stdout


def test_a_connect_timeout_that_is_not_positive_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    """--connect-timeout-s 0 exits 2 with one line before connecting anywhere."""
    assert main(["client", "ws://127.0.0.1:1/ws", "--token", "t", "--connect-timeout-s", "0"]) == 2
    assert capsys.readouterr().err == "stickyws: --connect-timeout-s must be a positive number of seconds\n"
