"""app_cookie stickiness in a real HAProxy: the app's cookie starts it, AWSALBAPP-0 carries the target (as the ALB)."""

from __future__ import annotations

import http.client
import sys
from pathlib import Path

import pytest

from stickyws.localproc import pid_alive
from stickyws.twin.cluster import TwinCluster
from stickyws.twin.haproxy_config import APP_LB_COOKIE_NAME
from tests.e2e.support import E2E_SETTINGS, TIME_SCALE, require_binaries

pytestmark = [pytest.mark.haproxy, pytest.mark.redis]

COOKIE_SERVER = Path(__file__).with_name("cookie_server.py")
SETTINGS = E2E_SETTINGS.with_overrides(
    {"stickiness_type": "app_cookie", "app_cookie_name": "SESSION", "stickiness_duration_s": 600}
)


def _get(twin: TwinCluster, path: str, cookies: dict[str, str]) -> tuple[str, dict[str, str]]:
    """``GET path`` through HAProxy with ``cookies``: the server that answered and the cookies the response set."""
    conn = http.client.HTTPConnection("127.0.0.1", twin.frontend_port, timeout=5)
    try:
        headers = {"Host": "localhost"}
        if cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        body = response.read().decode()
        assert response.status == 200, (response.status, body)
        set_cookies = {}
        for header in response.headers.get_all("Set-Cookie") or []:
            name, _, rest = header.partition("=")
            set_cookies[name] = rest
        return body, set_cookies
    finally:
        conn.close()


def test_awsalbapp_is_issued_with_the_app_cookie_and_routes_sticky_clients_and_follows_a_failover() -> None:
    """A response setting SESSION gets AWSALBAPP-0 naming its server; requests carrying AWSALBAPP-0 stay on that
    server (SESSION alone does not pin them); after a kill -9 they are served elsewhere and the cookie moves."""
    require_binaries()
    cmd = [sys.executable, str(COOKIE_SERVER), "--port", "{port}", "--server-id", "{server_id}"]
    with TwinCluster(SETTINGS, servers=2, time_scale=TIME_SCALE, capacity=2, server_cmd=cmd) as twin:
        pids = twin.pids()
        anonymous = [_get(twin, "/whoami", {}) for _ in range(4)]
        assert sorted(server for server, _ in anonymous) == ["s1", "s1", "s2", "s2"]  # round robin
        assert all(set_cookies == {} for _, set_cookies in anonymous)  # no app cookie, no AWSALBAPP

        server, set_cookies = _get(twin, "/login", {})
        assert set(set_cookies) == {"SESSION", APP_LB_COOKIE_NAME}
        assert set_cookies[APP_LB_COOKIE_NAME] == f"{server}; Max-Age=600; Path=/"
        cookies = {"SESSION": set_cookies["SESSION"].split(";")[0], APP_LB_COOKIE_NAME: server}

        assert {_get(twin, "/whoami", cookies)[0] for _ in range(10)} == {server}
        assert {_get(twin, "/whoami", {APP_LB_COOKIE_NAME: server})[0] for _ in range(10)} == {server}
        app_only = {"SESSION": cookies["SESSION"]}
        assert sorted(_get(twin, "/whoami", app_only)[0] for _ in range(4)) == ["s1", "s1", "s2", "s2"]

        report = twin.kill(server)
        other = "s2" if server == "s1" else "s1"
        assert report is not None
        assert (report.name, report.sticky, report.moved_to) == (server, True, other)
        print(report.render())
        assert report.refused_s is not None
        assert report.marked_down_s is not None
        assert report.refusals >= 1
        assert report.refused_s <= report.expected_s + 0.3
        moved, set_cookies = _get(twin, "/whoami", cookies)
        assert moved == other
        assert set_cookies[APP_LB_COOKIE_NAME] == f"{other}; Max-Age=600; Path=/"
    assert all(not pid_alive(pid) for pid in pids)
