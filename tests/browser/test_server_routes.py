"""What the reference server offers browsers: the client module, the pre-flight, CORS and the origin hints."""

from __future__ import annotations

import json
import logging
from importlib import resources

import aiohttp
import pytest

from stickyws import protocol
from stickyws.server.core import origin_warning
from stickyws.server.ws_adapter import warn_about_origins
from tests.server.helpers import VERIFIER, fast, run, server, token, url

PAGE = "http://app.example"


async def _get(
    rs, path: str = protocol.WS_PATH, *, method: str = "GET", headers=None, **query
) -> tuple[int, str, dict]:
    async with aiohttp.ClientSession() as http, http.request(method, url(rs, path, **query), headers=headers) as resp:
        return resp.status, await resp.text(), dict(resp.headers)


def _bearer(tok: str, **more: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}", "Origin": PAGE, **more}


def test_the_client_module_its_types_and_the_demo_page_are_served_with_their_content_types() -> None:
    """GET /stickyws-client.js, /stickyws-client.d.ts and /stickyws-demo.html answer the packaged files."""
    static = resources.files("stickyws") / "static"

    async def go() -> None:
        async with server() as rs:
            for name, kind in [
                ("stickyws-client.js", "text/javascript; charset=utf-8"),
                ("stickyws-client.d.ts", "application/typescript; charset=utf-8"),
                ("stickyws-demo.html", "text/html; charset=utf-8"),
            ]:
                status, body, headers = await _get(rs, f"/{name}")
                assert (status, headers["Content-Type"]) == (200, kind)
                assert body == (static / name).read_text(encoding="utf-8")
                assert headers["Access-Control-Allow-Origin"] == "*"

    run(go())
    assert "export class StickyClient extends EventTarget" in (static / "stickyws-client.js").read_text()


def test_preflight_answers_what_the_upgrade_would_without_claiming_anything() -> None:
    """GET /ws?preflight=1: 200 for an admissible handshake, the same JSON refusal otherwise; no route,
    no session, no connection and no handshake metric come of it."""

    async def go() -> None:
        async with server(fast(allowed_origins=PAGE)) as rs:
            status, body, headers = await _get(rs, headers=_bearer(token("ann")), preflight="1")
            assert (status, json.loads(body)) == (200, {"ok": True})
            assert (headers["Access-Control-Allow-Origin"], headers["Access-Control-Allow-Credentials"]) == (
                PAGE,
                "true",
            )
            assert await rs.core.registry.owner("ann") is None
            assert rs.core.connections == {}

            status, body, _ = await _get(rs, headers={"Origin": PAGE}, preflight="1")
            assert (status, json.loads(body)["error"]) == (401, protocol.REJECT_MISSING_TOKEN)
            expired = VERIFIER.issue("ann", ttl_s=-60)
            status, body, _ = await _get(rs, headers=_bearer(expired), preflight="1")
            assert (status, json.loads(body)) == (
                403,
                {"error": protocol.REJECT_INVALID_TOKEN, "message": "token expired"},
            )
            forged = {protocol.RESUME_HEADER: "sess.bad-mac"}
            status, body, _ = await _get(rs, headers=_bearer(token("ann"), **forged), preflight="1")
            assert (status, json.loads(body)["error"]) == (403, protocol.REJECT_INVALID_RESUME)
            status, body, _ = await _get(rs, preflight="1", token=token("ann"))  # query token, no Origin
            assert status == 200
            rejected = rs.core.metrics.out.getvalue()
            assert "HandshakesRejected" not in rejected

            rs.core.begin_drain("test")
            status, body, headers = await _get(rs, headers=_bearer(token("ann")), preflight="1")
            assert (status, json.loads(body)["error"], headers["Retry-After"]) == (503, protocol.REJECT_DRAINING, "1")
            assert headers["Access-Control-Expose-Headers"] == "Retry-After"

    run(go())


def test_preflight_at_capacity_is_503_and_a_plain_get_is_still_426() -> None:
    """A full server answers the pre-flight 503 + Retry-After; without ?preflight a GET stays 426."""

    async def go() -> None:
        async with (
            server(fast(max_connections=2, target_connections_per_task=1)) as rs,
            aiohttp.ClientSession() as http,
        ):
            sockets = [
                await http.ws_connect(url(rs, token=token(user)), protocols=[protocol.SUBPROTOCOL])
                for user in ("bob", "eve")
            ]
            status, body, headers = await _get(rs, headers={"Authorization": f"Bearer {token('cat')}"}, preflight="1")
            assert (status, json.loads(body)["error"], headers["Retry-After"]) == (
                503,
                protocol.REJECT_AT_CAPACITY,
                "1",
            )
            for ws in sockets:
                await ws.close()
            status, body, _ = await _get(rs)
            assert (status, json.loads(body)["error"]) == (426, protocol.REJECT_UPGRADE_REQUIRED)

    run(go())


def test_a_refused_origin_reads_a_refusal_that_names_the_setting() -> None:
    """Origin not allowed: the upgrade and the pre-flight answer 403 naming the origin and allowed_origins,
    and the pre-flight carries CORS headers so the page can read why (the token is never judged)."""
    other = "http://localhost:5173"

    async def go() -> None:
        async with server(fast(allowed_origins=PAGE)) as rs:
            status, body, headers = await _get(rs, headers=_bearer("not-a-jwt", Origin=other), preflight="1")
            refusal = json.loads(body)
            assert (status, refusal["error"]) == (403, protocol.REJECT_ORIGIN)
            assert refusal["message"] == (
                f"origin '{other}' is not allowed: add it to the allowed_origins setting "
                f"(STICKYWS_ALLOWED_ORIGINS={other}, comma-separated; * allows any origin)"
            )
            assert headers["Access-Control-Allow-Origin"] == other
            upgrade = {
                "Upgrade": "websocket",
                "Connection": "Upgrade",
                "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                "Origin": other,
            }
            status, body, _ = await _get(rs, headers=upgrade, token=token("ann"))
            assert (status, json.loads(body)) == (403, refusal)

    run(go())


def test_options_answers_the_cors_preflight_of_a_cross_origin_fetch() -> None:
    """OPTIONS /ws allows GET with Authorization and X-Stickyws-Resume for the requesting origin."""

    async def go() -> None:
        async with server(fast(allowed_origins=PAGE)) as rs:
            status, _, headers = await _get(rs, method="OPTIONS", headers={"Origin": PAGE})
            assert status == 204
            assert headers["Access-Control-Allow-Origin"] == PAGE
            assert headers["Access-Control-Allow-Methods"] == "GET"
            assert headers["Access-Control-Allow-Headers"] == "Authorization, X-Stickyws-Resume"

    run(go())


@pytest.mark.parametrize("bearer_first", [False, True])
def test_the_bearer_subprotocol_is_accepted_in_either_position_and_stickyws_v1_selected(bearer_first: bool) -> None:
    """Offered `stickyws.bearer.<jwt>` and `stickyws.v1` in any order, the server authenticates and
    selects `stickyws.v1` (a browser fails a handshake whose answer selects no offered protocol)."""
    offered = [protocol.SUBPROTOCOL, protocol.BEARER_SUBPROTOCOL_PREFIX + token("dan")]
    if bearer_first:
        offered.reverse()

    async def go() -> None:
        async with server() as rs, aiohttp.ClientSession() as http:
            ws = await http.ws_connect(url(rs), protocols=offered)
            assert ws.protocol == protocol.SUBPROTOCOL
            first = json.loads((await ws.receive(timeout=3)).data)
            assert first["type"] == "connected"
            await ws.close()

    run(go())


def test_startup_warns_when_browsers_can_reach_a_server_that_allows_no_origin(caplog: pytest.LogCaptureFixture) -> None:
    """Empty allowed_origins on a non-loopback bind logs one warning naming the setting; loopback or a
    configured list logs nothing."""
    assert origin_warning((), "127.0.0.1") is None
    assert origin_warning((), "::1") is None
    assert origin_warning((PAGE,), "0.0.0.0") is None
    text = origin_warning((), "0.0.0.0")
    assert text is not None
    assert "allowed_origins is empty on a server bound to 0.0.0.0" in text
    assert "STICKYWS_ALLOWED_ORIGINS" in text

    with caplog.at_level(logging.WARNING, logger="stickyws.server"):
        warn_about_origins((), "0.0.0.0")
        warn_about_origins((), "127.0.0.1")
    assert [r.getMessage() for r in caplog.records] == [text]
