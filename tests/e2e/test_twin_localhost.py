"""The twin's localhost URL: an ordinary aiohttp cookie jar keeps the stickiness cookie by name, never by IP."""

from __future__ import annotations

import json

import aiohttp
import pytest

from stickyws import protocol
from stickyws.client.connection import with_query
from stickyws.twin.cluster import TwinCluster
from tests.e2e.support import run

pytestmark = [pytest.mark.haproxy, pytest.mark.redis]

RECONNECTS = 6


async def _servers_seen(twin: TwinCluster, url: str, user: str) -> tuple[list[str], int]:
    """Connect RECONNECTS times in a row with one default aiohttp session; the server of each, and the jar's size."""
    servers = []
    async with aiohttp.ClientSession() as session:  # aiohttp's default CookieJar: what most client code uses
        for _ in range(RECONNECTS):
            ws = await session.ws_connect(
                with_query(url, {"token": twin.token(user)}), protocols=(protocol.SUBPROTOCOL,), heartbeat=None
            )
            frame = json.loads((await ws.receive(timeout=5)).data)
            assert frame["type"] == "connected"
            servers.append(str(frame["serverId"]))
            await ws.close()
        return servers, len(session.cookie_jar)


def test_localhost_url_keeps_a_default_aiohttp_client_on_one_server_the_ip_url_does_not(twin: TwinCluster) -> None:
    """Through twin.localhost_url every reconnect of one aiohttp session lands on its first server; through the
    127.0.0.1 URL the jar stores no cookie and the reconnects spread over the servers."""
    assert twin.localhost_url == f"ws://localhost:{twin.frontend_port}/ws"
    assert twin.localhost_http_url == f"http://localhost:{twin.frontend_port}"

    by_name, jar_by_name = run(_servers_seen(twin, twin.localhost_url, "localhost-user"), timeout_s=30)
    by_ip, jar_by_ip = run(_servers_seen(twin, twin.url, "ip-user"), timeout_s=30)
    print(f"by name: {by_name} ({jar_by_name} cookies kept); by IP: {by_ip} ({jar_by_ip} cookies kept)")
    assert by_name == [by_name[0]] * RECONNECTS
    assert jar_by_name >= 1
    assert jar_by_ip == 0
    assert len(set(by_ip)) == len(twin.serving())  # round robin: no cookie, no stickiness
