"""kill NAME reports how long the dead server's sticky clients got 503, and a real sticky client sees the same."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest

from stickyws import protocol
from stickyws.client.connection import handshake_headers, with_query
from stickyws.twin.cluster import KILL_PROBE_INTERVAL_S, TwinCluster
from stickyws.twin.haproxy_config import LB_COOKIE_NAME
from stickyws.twin.kill_report import KillReport
from tests.e2e.support import E2E_SETTINGS, TIME_SCALE, client_session, run

pytestmark = [pytest.mark.haproxy, pytest.mark.redis]

#: The twin's check interval (5 s x 0.05) and how many failed checks mark a server down.
INTER_S = E2E_SETTINGS["health_check_interval_s"] * TIME_SCALE
FALL = E2E_SETTINGS["unhealthy_threshold_count"]
#: A reconnect loop's own resolution: one handshake on loopback plus the pause between tries.
CLIENT_SLACK_S = 0.2


async def _kill_while_reconnecting(twin: TwinCluster) -> tuple[KillReport, str, float, int, str]:
    """Stick one client to a server, kill that server and retry the handshake with the cookie until another
    server accepts it. Returns the report, the victim, the client's refused time, its 503 count and new server."""
    url = with_query(twin.url, {"token": twin.token("kill-report-user")})
    async with client_session() as session:
        ws = await session.ws_connect(url, protocols=(protocol.SUBPROTOCOL,), heartbeat=None)
        victim = str(json.loads((await ws.receive(timeout=5)).data)["serverId"])
        set_cookies = [h.split(";")[0] for h in handshake_headers(ws).getall("Set-Cookie")]
        [cookie] = [c for c in set_cookies if c.startswith(f"{LB_COOKIE_NAME}=")]
        assert cookie.startswith(f"{LB_COOKIE_NAME}={victim}|")  # the slot name, then HAProxy's dates
        await ws.close()

        started = time.monotonic()
        proc = twin.procs[victim].proc
        report_task = asyncio.ensure_future(asyncio.to_thread(twin.kill, victim))
        # The first retry only once the SIGKILL has landed: before it the victim would still answer.
        for _ in range(500):
            if proc.poll() is not None:
                break
            await asyncio.sleep(0.01)
        assert proc.poll() is not None, "the victim outlived its SIGKILL by 5 s"
        refusals: list[int] = []
        while True:
            try:
                ws = await session.ws_connect(
                    url, protocols=(protocol.SUBPROTOCOL,), heartbeat=None, headers={"Cookie": cookie}
                )
            except aiohttp.WSServerHandshakeError as exc:
                refusals.append(exc.status)
                await asyncio.sleep(KILL_PROBE_INTERVAL_S)
                continue
            refused_s = time.monotonic() - started
            moved_to = str(json.loads((await ws.receive(timeout=5)).data)["serverId"])
            await ws.close()
            break
        report = await report_task
        assert report is not None
        # 503 from HAProxy until the checks mark it down; a handshake that raced the SIGKILL itself may get 502.
        assert refusals[0] in (502, 503)
        assert set(refusals[1:]) <= {503}
        return report, victim, refused_s, len(refusals), moved_to


def test_kill_reports_the_sticky_clients_503_window_measured_against_the_health_checks(twin: TwinCluster) -> None:
    """After a SIGKILL the report's 503 window lasts until HAProxy's checks mark the server down (at most
    unhealthy_threshold_count x the scaled interval), agrees with what a sticky client saw, and names the AWS figure."""
    report, victim, client_refused_s, client_refusals, client_moved_to = run(
        _kill_while_reconnecting(twin), timeout_s=30
    )
    print(report.render())
    print(f"sticky client: refused {client_refusals} times for {client_refused_s:.2f} s, then {client_moved_to}")
    assert (report.name, report.sticky) == (victim, True)
    assert report.moved_to in twin.serving()
    assert client_moved_to != victim
    assert (report.expected_s, report.aws_s) == (pytest.approx(FALL * INTER_S), FALL * 5)
    assert report.refused_s is not None
    assert report.marked_down_s is not None
    # A refused connect fails a check at once: down after the FALL-th check, (FALL - 1) to FALL intervals on.
    # HAProxy's checks run on their own timers: a loaded machine delays them, never brings them forward.
    assert (FALL - 1) * INTER_S - CLIENT_SLACK_S <= report.refused_s <= 1.5 * FALL * INTER_S + CLIENT_SLACK_S
    assert abs(report.refused_s - report.marked_down_s) <= CLIENT_SLACK_S
    assert report.refusals >= 1
    assert client_refusals >= 1
    assert abs(client_refused_s - report.refused_s) <= CLIENT_SLACK_S
    assert report.render().startswith(
        f"{victim}: SIGKILL: its sticky clients were refused (503) for {report.refused_s:.2f} s "
        f"({report.refusals} requests) until HAProxy's checks marked it down"
    )
    assert report.render().endswith(
        f"on AWS about 10 s (unhealthy_threshold_count {FALL} x health_check_interval_s 5 s)"
    )
