"""Each handshake outcome of ``GET /ws`` with its exact status, body and headers, on real sockets.

Every test that takes ``registry_url`` runs twice: on one redis-server and on a local Redis Cluster. The
refusals decided before the registry is asked (token, origin, upgrade, draining) run on the in-memory
registry; the registry-down refusal stops its own redis-server, which the shared cluster cannot do.
"""

from __future__ import annotations

import json

import aiohttp
import pytest

from stickyws import keys, protocol
from stickyws.localproc import RedisServer
from stickyws.server.auth import TokenVerifier
from tests.server.helpers import SECRET, connect, eventually, fast, recv_json, run, server, token, url
from tests.server.registries import Admin


async def _status(rs, *, headers=None, **query) -> tuple[int, dict, dict]:
    """Send a raw upgrade request (so a refusal's body and headers can be read); return (status, body, headers)."""
    async with (
        aiohttp.ClientSession() as http,
        http.get(url(rs, **query), headers={**(headers or {}), **_upgrade_headers()}) as resp,
    ):
        if resp.status == 101:
            return 101, {}, dict(resp.headers)
        return resp.status, json.loads(await resp.text()), dict(resp.headers)


def _upgrade_headers() -> dict[str, str]:
    return {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    }


def test_missing_token_is_401() -> None:
    """A handshake without any token is refused with 401 missing_token."""

    async def go() -> None:
        async with server() as rs:
            status, body, _ = await _status(rs)
            assert (status, body["error"]) == (401, protocol.REJECT_MISSING_TOKEN)

    run(go())


@pytest.mark.parametrize(
    ("make", "label"),
    [
        (lambda: "not.a.jwt", "garbage"),
        (lambda: TokenVerifier(SECRET, "stickyws").issue("alice", ttl_s=-60), "expired"),
        (lambda: TokenVerifier("another-key-0123456789-abcdefghijklmnopq", "stickyws").issue("alice"), "wrong key"),
        (lambda: TokenVerifier(SECRET, "someone-else").issue("alice"), "wrong audience"),
    ],
)
def test_invalid_token_is_403(make, label) -> None:
    """A token that is malformed, expired, signed with another key or for another audience gets 403."""

    async def go() -> None:
        async with server() as rs:
            status, body, _ = await _status(rs, token=make())
            assert (status, body["error"]) == (403, protocol.REJECT_INVALID_TOKEN), label

    run(go())


def test_disallowed_origin_is_403_and_allowed_origin_connects() -> None:
    """A browser Origin outside allowed_origins gets 403; a listed one, or none at all, connects."""

    async def go() -> None:
        async with server(fast(allowed_origins="https://app.example.com")) as rs:
            status, body, _ = await _status(rs, headers={"Origin": "https://evil.example.net"}, token=token("a"))
            assert (status, body["error"]) == (403, protocol.REJECT_ORIGIN)
            status, _, _ = await _status(rs, headers={"Origin": "https://app.example.com"}, token=token("a"))
            assert status == 101
            status, _, _ = await _status(rs, token=token("a"))
            assert status == 101

    run(go())


def test_plain_get_is_426() -> None:
    """A plain GET on /ws (no upgrade) gets 426 with Upgrade: websocket."""

    async def go() -> None:
        async with server() as rs, aiohttp.ClientSession() as http, http.get(url(rs)) as resp:
            assert resp.status == 426
            assert resp.headers["Upgrade"] == "websocket"
            assert json.loads(await resp.text())["error"] == protocol.REJECT_UPGRADE_REQUIRED

    run(go())


def test_token_from_header_and_subprotocol_and_negotiated_protocol() -> None:
    """Bearer header and stickyws.bearer.* subprotocol both authenticate; the server answers stickyws.v1."""

    async def go() -> None:
        async with server() as rs, aiohttp.ClientSession() as http:
            ws = await http.ws_connect(
                url(rs), headers={"Authorization": f"Bearer {token('bob')}"}, protocols=[protocol.SUBPROTOCOL]
            )
            assert ws.protocol == protocol.SUBPROTOCOL
            first = await recv_json(ws)
            assert (first["type"], first["protocol"]) == ("connected", protocol.SUBPROTOCOL)
            await ws.close()
            ws = await http.ws_connect(
                url(rs), protocols=[protocol.SUBPROTOCOL, protocol.BEARER_SUBPROTOCOL_PREFIX + token("carol")]
            )
            assert ws.protocol == protocol.SUBPROTOCOL
            first = await recv_json(ws)
            assert first["type"] == "connected"
            assert set(first) >= {"serverId", "sessionId", "resumeToken", "protocol", "heartbeatMs", "timestamp"}
            assert first["heartbeatMs"] == 200
            await ws.close()

    run(go())


def test_draining_is_503_with_retry_after() -> None:
    """While draining, handshakes get 503 draining with Retry-After."""

    async def go() -> None:
        async with server() as rs:
            rs.core.begin_drain("test")
            status, body, headers = await _status(rs, token=token("a"))
            assert (status, body["error"], headers["Retry-After"]) == (503, protocol.REJECT_DRAINING, "1")

    run(go())


def test_connection_limit_is_503_with_retry_after(registry_url: str, admin: Admin) -> None:
    """At max_connections, the next handshake gets 503 at_capacity with Retry-After and claims no route."""

    async def go() -> None:
        settings = fast(max_connections=2, target_connections_per_task=1)
        async with server(settings, redis_url=registry_url) as rs, aiohttp.ClientSession() as http:
            first, _ = await connect(http, rs, "first")
            second, _ = await connect(http, rs, "second")
            status, body, headers = await _status(rs, token=token("third"))
            assert (status, body["error"], headers["Retry-After"]) == (503, protocol.REJECT_AT_CAPACITY, "1")
            assert [admin.client.get(keys.user_key(u)) for u in ("first", "second", "third")] == [b"srv-a"] * 2 + [None]
            await first.close()
            await second.close()

    run(go())


def test_forged_or_foreign_resume_token_is_403(registry_url: str, admin: Admin) -> None:
    """A resume token not signed for this user (forged, or another user's) is refused with 403 and takes
    no route."""

    async def go() -> None:
        async with server(redis_url=registry_url) as rs, aiohttp.ClientSession() as http:
            ws, first = await connect(http, rs, "alice")
            await ws.close()
            status, body, _ = await _status(rs, token=token("mallory"), resume=first["resumeToken"])
            assert (status, body["error"]) == (403, protocol.REJECT_INVALID_RESUME)
            for forged in (first["sessionId"] + ".AAAA", first["sessionId"] + ".%C3%A9t%C3%A9"):
                status, body, _ = await _status(rs, token=token("alice"), resume=forged)
                assert (status, body["error"]) == (403, protocol.REJECT_INVALID_RESUME)
            assert admin.client.get(keys.user_key("mallory")) is None

    run(go())


def test_reject_policy_409_when_user_is_on_another_live_server(registry_url: str, admin: Admin) -> None:
    """Under connection_policy=reject a user on another live server gets 409 and the route stays A's;
    after it closes, 101."""

    async def go() -> None:
        settings = fast(connection_policy="reject")
        async with (
            server(settings, redis_url=registry_url, server_id="A") as a,
            server(settings, redis_url=registry_url, server_id="B") as b,
            aiohttp.ClientSession() as http,
        ):
            ws, _ = await connect(http, a, "alice")
            status, body, _ = await _status(b, token=token("alice"))
            assert (status, body["error"]) == (409, protocol.REJECT_CONFLICT)
            assert admin.client.get(keys.user_key("alice")) == b"A"
            await ws.close()
            await eventually(lambda: admin.client.get(keys.user_key("alice")) is None)  # A released it on close
            status, _, _ = await _status(b, token=token("alice"))
            assert status == 101
            await eventually(lambda: not b.core.connections)  # the raw client hung up: B saw it go

    run(go())


def test_takeover_policy_closes_old_connection_with_4001(registry_url: str, admin: Admin) -> None:
    """Under takeover a second connection on another server wins and the old one closes with 4001."""

    async def go() -> None:
        async with (
            server(redis_url=registry_url, server_id="A") as a,
            server(redis_url=registry_url, server_id="B") as b,
            aiohttp.ClientSession() as http,
        ):
            old, _ = await connect(http, a, "alice")
            new, _ = await connect(http, b, "alice")
            msg = await old.receive(timeout=3)
            assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, protocol.CLOSE_TAKEN_OVER)
            assert admin.client.get(keys.user_key("alice")) == b"B"
            await new.close()

    run(go())


def test_registry_down_reject_policy_is_503(make_redis) -> None:
    """With Redis unreachable and registry_down_policy=reject, handshakes get 503 registry_unavailable
    (one redis-server only: the test stops its registry, which the shared cluster must survive)."""
    rsrv: RedisServer = make_redis()

    async def go() -> None:
        async with server(redis_url=rsrv.url) as rs:
            rsrv.stop()
            status, body, headers = await _status(rs, token=token("a"))
            assert (status, body["error"], headers["Retry-After"]) == (503, protocol.REJECT_REGISTRY_DOWN, "1")

    run(go())


def test_permessage_deflate_follows_the_setting() -> None:
    """permessage-deflate is negotiated only when the setting turns it on (off by default)."""

    async def go() -> None:
        offer = {"Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits"}
        async with server() as rs:
            status, _, headers = await _status(rs, headers=offer, token=token("a"))
            assert status == 101
            assert "Sec-WebSocket-Extensions" not in headers
        async with server(fast(permessage_deflate=True)) as rs:
            status, _, headers = await _status(rs, headers=offer, token=token("a"))
            assert status == 101
            assert headers["Sec-WebSocket-Extensions"].startswith("permessage-deflate")

    run(go())


def test_routing_decisions_are_audited_without_tokens() -> None:
    """Each accept and reject writes an audit line with user, server, decision, reason and remote; no token."""

    async def go() -> None:
        async with server() as rs, aiohttp.ClientSession() as http:
            tok = token("alice")
            ws = await http.ws_connect(url(rs, token=tok))
            await ws.close()
            await _status(rs, token="garbage.token.here")
            await rs.core.close()
            await rs.core.close()  # close() is idempotent
            text = rs.core.metrics.out.getvalue()
            assert tok not in text
            assert "garbage.token.here" not in text
            routes = [json.loads(line) for line in text.splitlines() if '"event":"route"' in line]
            assert [(r["decision"], r["reason"]) for r in routes] == [
                ("accept", "new"),
                ("reject", protocol.REJECT_INVALID_TOKEN),
            ]
            assert routes[0]["user"] == "alice"
            assert {r["server"] for r in routes} == {"srv-a"}
            assert {r["remote"] for r in routes} == {"127.0.0.1"}

    run(go())


def test_second_connection_on_the_same_server_takes_over_with_4001(registry_url: str, admin: Admin) -> None:
    """A user's second connection to the same server replaces the first (4001); the route stays."""

    async def go() -> None:
        async with server(redis_url=registry_url) as rs, aiohttp.ClientSession() as http:
            old, _ = await connect(http, rs, "alice")
            new, _ = await connect(http, rs, "alice")
            msg = await old.receive(timeout=3)
            assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, protocol.CLOSE_TAKEN_OVER)
            await eventually(lambda: len(rs.core.connections) == 1)
            assert list(rs.core.connections.values()) == [rs.core.by_user["alice"]]
            assert admin.client.get(keys.user_key("alice")) == b"srv-a"
            assert await rs.core.registry.release("alice", "srv-a") is True  # the route was kept for the new one
            await new.close()

    run(go())
