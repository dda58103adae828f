"""The AWSALB cookie pins reconnects to one server; without it, connections spread."""

from __future__ import annotations

import json
from collections import Counter

import aiohttp
import pytest

from stickyws import protocol
from stickyws.client.connection import handshake_headers, with_query
from stickyws.client.cookies import CookieJar
from stickyws.twin.cluster import TwinCluster
from tests.e2e.support import client_session, run

pytestmark = [pytest.mark.haproxy, pytest.mark.redis]

RECONNECTS = 100


async def _handshake(session: aiohttp.ClientSession, url: str, token: str, cookie: str | None) -> tuple[str, list[str]]:
    """Open one connection, read its ``connected`` frame, close; returns the server id and Set-Cookie headers."""
    headers = {"Cookie": cookie} if cookie else {}
    async with session.ws_connect(
        with_query(url, {"token": token}), protocols=(protocol.SUBPROTOCOL,), headers=headers
    ) as ws:
        frame = json.loads((await ws.receive()).data)
        set_cookies = handshake_headers(ws).getall("Set-Cookie", [])
        await ws.close()
    assert frame["type"] == "connected"
    return str(frame["serverId"]), set_cookies


def test_cookie_pins_every_reconnect_and_no_cookie_spreads(twin: TwinCluster) -> None:
    """100/100 reconnects with the cookie land on the same server for every server; 99 without it spread 33/33/33."""
    servers = twin.serving()
    token = twin.token("sticky-user")

    async def scenario() -> tuple[dict[str, Counter[str]], Counter[str], set[str]]:
        async with client_session() as session:
            jars: dict[str, CookieJar] = {}
            names: set[str] = set()
            while len(jars) < len(servers):  # round robin: one fresh connection per server
                jar = CookieJar()
                server, set_cookies = await _handshake(session, twin.url, token, None)
                jar.update(twin.url, set_cookies)
                names |= set(jar.cookies(twin.url))
                jars.setdefault(server, jar)
            pinned: dict[str, Counter[str]] = {}
            for server, jar in jars.items():
                pinned[server] = Counter()
                for _ in range(RECONNECTS):
                    landed, set_cookies = await _handshake(session, twin.url, token, jar.header(twin.url))
                    jar.update(twin.url, set_cookies)
                    pinned[server][landed] += 1
            spread: Counter[str] = Counter()
            for _ in range(33 * len(servers)):
                landed, _ = await _handshake(session, twin.url, token, None)
                spread[landed] += 1
            return pinned, spread, names

    pinned, spread, names = run(scenario(), timeout_s=60)
    assert names == {"AWSALB", "AWSALBCORS"}  # both, as the ALB sets them
    assert pinned == {s: Counter({s: RECONNECTS}) for s in servers}
    assert spread == Counter({s: 33 for s in servers})
