"""lb_cookie stickiness in a real HAProxy holds for a client that sends the AWSALB value back in quotes."""

from __future__ import annotations

import http.client
import sys
from pathlib import Path

import pytest

from stickyws.localproc import pid_alive
from stickyws.twin.cluster import TwinCluster
from stickyws.twin.haproxy_config import LB_COOKIE_NAME
from tests.e2e.support import E2E_SETTINGS, TIME_SCALE, require_binaries

pytestmark = [pytest.mark.haproxy, pytest.mark.redis]

COOKIE_SERVER = Path(__file__).with_name("cookie_server.py")


def _get(twin: TwinCluster, cookie: str | None) -> tuple[str, str | None]:
    """``GET /whoami`` through HAProxy: the server that answered and the AWSALB value it set, if any."""
    conn = http.client.HTTPConnection("127.0.0.1", twin.frontend_port, timeout=5)
    try:
        conn.request("GET", "/whoami", headers={"Host": "localhost", **({"Cookie": cookie} if cookie else {})})
        response = conn.getresponse()
        body = response.read().decode()
        assert response.status == 200, (response.status, body)
        for header in response.headers.get_all("Set-Cookie") or []:
            name, _, rest = header.partition("=")
            if name == LB_COOKIE_NAME:
                return body, rest.split(";")[0]
        return body, None
    finally:
        conn.close()


def test_quoted_awsalb_sticks_like_the_bare_one() -> None:
    """AWSALB="<value>" (as aiohttp's default jar sends a value holding '/') reaches the same server as the bare
    value, every time, while requests without it are spread."""
    require_binaries()
    cmd = [sys.executable, str(COOKIE_SERVER), "--port", "{port}", "--server-id", "{server_id}"]
    with TwinCluster(E2E_SETTINGS, servers=2, time_scale=TIME_SCALE, capacity=2, server_cmd=cmd) as twin:
        pids = twin.pids()
        server, value = _get(twin, None)
        assert value is not None
        assert value.startswith(f"{server}|")
        quoted = f'SESSION=x; {LB_COOKIE_NAME}="{value}"; other=1'
        assert {_get(twin, quoted)[0] for _ in range(10)} == {server}
        assert {_get(twin, f"{LB_COOKIE_NAME}={value}")[0] for _ in range(10)} == {server}
        assert {_get(twin, None)[0] for _ in range(4)} == {"s1", "s2"}
    assert not any(pid_alive(pid) for pid in pids)
