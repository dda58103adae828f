"""The Socket.IO example in the twin: cookie stickiness carries polling into the upgrade; without it, 400s."""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
import socketio
from yarl import URL

from stickyws.localproc import pid_alive
from stickyws.twin.cluster import TwinCluster
from tests.e2e.support import E2E_SETTINGS, SERVERS, TIME_SCALE, require_binaries, run

pytestmark = [pytest.mark.haproxy, pytest.mark.redis]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "socketio" / "server.py"
SERVER_CMD = [sys.executable, str(EXAMPLE), "--port", "{port}", "--server-id", "{server_id}"]
SERVER_CMD += ["--redis-url", "{redis_url}"]
CLIENTS = 100
MESSAGES = 3
#: python-engineio's answer to a polling request or upgrade for a session another server holds
#: (the JavaScript server words the same 400 "Session ID unknown").
UNKNOWN_SESSION = "Invalid session"
#: How long a client waits to connect and for each answer. Generous: 100 clients connect at once while
#: the other test worker is busy, and a slow answer is not what these tests are about (a 400 is immediate).
CLIENT_TIMEOUT_S = 10


def browser_like_jar() -> aiohttp.CookieJar:
    """A cookie jar that sends every cookie back exactly as it was set, as a browser does.

    ``unsafe=True`` keeps cookies set by an IP-address host (127.0.0.1). ``quote_cookie=False`` keeps
    values verbatim: by default aiohttp wraps a value holding ``/`` in double quotes, and HAProxy's
    ``AWSALB`` (``s1#<date>#<date>``, the dates base64 of the clock in 4 s steps) holds a ``/`` for at
    least 4 s in every 256 s. HAProxy takes the quoted value for an unknown server and routes each
    request of that window round robin (``Invalid session``: the run fails).
    """
    return aiohttp.CookieJar(unsafe=True, quote_cookie=False)


@dataclass
class Outcome:
    """What the clients of one run saw."""

    connected: int = 0
    upgraded: int = 0
    acked: int = 0
    completed: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    unknown_session_400s: int = 0
    servers: Counter[str] = field(default_factory=Counter)


async def _client(url: str, outcome: Outcome) -> None:
    """One Socket.IO client with its own cookie jar: polling first, then the upgrade, then MESSAGES echoes."""

    async def on_request_end(_: Any, __: SimpleNamespace, params: aiohttp.TraceRequestEndParams) -> None:
        if params.response.status == 400:
            body = await params.response.text()
            outcome.unknown_session_400s += UNKNOWN_SESSION in body

    trace = aiohttp.TraceConfig()
    trace.on_request_end.append(on_request_end)
    http = aiohttp.ClientSession(cookie_jar=browser_like_jar(), trace_configs=[trace])
    client = socketio.AsyncClient(http_session=http, reconnection=False)
    try:
        # connect() returns after the handshake on polling AND the attempt to upgrade (python-engineio
        # upgrades before it returns): the transport the echoes use is settled here, nothing to wait for.
        await client.connect(url, transports=["polling", "websocket"], wait_timeout=CLIENT_TIMEOUT_S)
        outcome.connected += 1
        for i in range(MESSAGES):
            answer = await client.call("echo", {"n": i}, timeout=CLIENT_TIMEOUT_S)
            assert answer["data"] == {"n": i}
            outcome.acked += 1
            outcome.servers[answer["server"]] += 1
        outcome.upgraded += client.transport() == "websocket"
        outcome.completed += 1
    except Exception as exc:  # every failure is counted by its type; the sticky run asserts there is none
        outcome.failures[type(exc).__name__] += 1
    finally:
        await client.disconnect()
        await http.close()


def _run_clients(stickiness: bool) -> Outcome:
    """Start a twin of three example servers, run CLIENTS clients at once, stop it and check its PIDs are gone."""
    require_binaries()
    settings = E2E_SETTINGS.with_overrides({"stickiness_enabled": stickiness})
    outcome = Outcome()
    with TwinCluster(
        settings, servers=SERVERS, time_scale=TIME_SCALE, server_cmd=SERVER_CMD, allow_rules=("stickiness",)
    ) as twin:
        pids = twin.pids()
        assert len(pids) == SERVERS + 2

        async def clients() -> None:
            await asyncio.gather(*(_client(twin.http_url, outcome) for _ in range(CLIENTS)))

        run(clients(), timeout_s=90)
    assert all(not pid_alive(pid) for pid in pids)
    return outcome


def test_cookie_stickiness_carries_100_polling_clients_through_the_upgrade() -> None:
    """With lb_cookie stickiness, 100 clients start on polling, upgrade and get every echo: 0 failures, 0 400s."""
    outcome = _run_clients(stickiness=True)
    assert outcome.failures == Counter()
    assert outcome.unknown_session_400s == 0
    assert (outcome.connected, outcome.upgraded, outcome.acked) == (CLIENTS, CLIENTS, CLIENTS * MESSAGES)
    assert outcome.completed == CLIENTS
    assert sorted(outcome.servers) == ["s1", "s2", "s3"]


def test_without_stickiness_polling_requests_reach_servers_that_do_not_know_the_session() -> None:
    """With stickiness off, the same run sees 400 'Invalid session' answers and failed clients (counted)."""
    outcome = _run_clients(stickiness=False)
    failed = sum(outcome.failures.values())
    print(f"stickiness off: {failed} of {CLIENTS} clients failed, {outcome.unknown_session_400s} unknown-session 400s")
    assert outcome.unknown_session_400s > 0
    assert failed > 0
    assert outcome.completed + failed == CLIENTS
    assert outcome.failures["ConnectionError"] > 0  # connect() itself fails: its polling requests went astray


def test_the_clients_send_a_stickiness_cookie_holding_a_slash_back_verbatim() -> None:
    """The clients' jar sends an AWSALB value holding '/' (HAProxy's, 4 s in every 256 s) back unquoted."""

    async def sent_header() -> str:
        jar = browser_like_jar()
        url = URL("http://127.0.0.1:8080/socket.io/")
        jar.update_cookies_from_headers(["AWSALB=s1#7CaxVH/#7CaxVH/; Max-Age=86400; Path=/"], url)
        return jar.filter_cookies(url).output(header="Cookie:")

    assert run(sent_header(), timeout_s=5) == "Cookie: AWSALB=s1#7CaxVH/#7CaxVH/"
