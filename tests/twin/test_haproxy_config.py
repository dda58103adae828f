"""The HAProxy renderer: golden text, the ALB mapping line by line, and HAProxy's own validation."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from stickyws.settings import Settings
from stickyws.twin.haproxy_config import Layout, Slot, duration, render, status_expectation

GOLDEN = Path(__file__).parent / "golden"
LAYOUT = Layout(
    frontend_port=8000,
    stats_socket="/run/stickyws-twin/haproxy.sock",
    slots=[Slot("s1", 9001), Slot("s2", 9002), Slot("s3")],
    time_scale=0.05,
)
APP_COOKIE = Settings().with_overrides(
    {
        "stickiness_type": "app_cookie",
        "app_cookie_name": "SESSION",
        "stickiness_duration_s": 600,
        "idle_timeout_s": 3,
        "health_check_path": "/ready",
        "health_check_matcher": "200-299",
        "health_check_interval_s": 10,
        "healthy_threshold_count": 3,
        "unhealthy_threshold_count": 2,
    }
)
CASES = {"lb_cookie_defaults.cfg": Settings(), "app_cookie_short.cfg": APP_COOKIE}


def _golden(name: str, text: str) -> str:
    path = GOLDEN / name
    if os.environ.get("STICKYWS_UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    return path.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(CASES))
def test_render_matches_golden_text(name: str) -> None:
    """The rendered configuration is byte-for-byte the reviewed golden file (STICKYWS_UPDATE_GOLDEN=1 rewrites it)."""
    text = render(CASES[name], LAYOUT)
    assert text == _golden(name, text)


def test_alb_settings_map_to_the_measured_directives() -> None:
    """Cookie, idle timeout, health check, retries and the runtime socket follow the facts file's mapping."""
    s = Settings().with_overrides(
        {"stickiness_duration_s": 900, "idle_timeout_s": 7, "health_check_interval_s": 20, "health_check_timeout_s": 4}
    )
    text = render(s, Layout(frontend_port=1234, stats_socket="/tmp/x.sock", slots=[Slot("s1", 5)], time_scale=0.1))
    lines = {line.strip() for line in text.splitlines()}
    assert 'cookie AWSALB insert indirect nocache maxidle 900s maxlife 900s attr "Max-Age=900"' in lines
    assert {"timeout tunnel 7s", "timeout client 7s", "timeout server 7s", "timeout http-request 7s"} <= lines
    assert "default-server inter 2s fall 3 rise 2" in lines  # 20 s x 0.1
    assert "timeout check 400ms" in lines  # 4 s x 0.1
    assert "http-check send meth GET uri /health ver HTTP/1.1 hdr Host localhost" in lines
    assert {"retries 0", "option redispatch", "stats socket /tmp/x.sock mode 660 level admin"} <= lines
    assert "server s1 127.0.0.1:5 check cookie s1" in lines
    directives = [line for line in lines if line and not line.startswith("#")]
    assert not [line for line in directives if re.search(r"\b(h2|alpn|proto)\b", line)]


def test_app_cookie_routes_on_awsalbapp_issued_with_the_application_cookie() -> None:
    """app_cookie mode routes on AWSALBAPP-0 (never inserted by HAProxy itself), sets it when the app's cookie
    is set or the request carried it, and follows no stick table on the app's cookie."""
    lines = {line.strip() for line in render(APP_COOKIE, LAYOUT).splitlines()}
    assert "cookie AWSALBAPP-0" in lines
    assert {"server s1 127.0.0.1:9001 check cookie s1", "server s3 127.0.0.1:1 check cookie s3 disabled"} <= lines
    assert (
        'http-response add-header Set-Cookie "AWSALBAPP-0=%[srv_name]; Max-Age=600; Path=/"'
        " if { srv_name -m found } { res.cook(SESSION) -m found }"
        " || { srv_name -m found } { var(txn.stickyws_albapp) -m found }"
    ) in lines
    assert not [line for line in lines if line.startswith(("stick", "cookie AWSALB ")) or "insert" in line]


def test_stickiness_disabled_renders_no_cookie() -> None:
    """With stickiness off the backend neither inserts a cookie nor gives servers one."""
    text = render(Settings().with_overrides({"stickiness_enabled": False}), LAYOUT)
    assert "cookie" not in text.replace("# stickiness disabled", "")


def test_http2_and_bad_app_cookie_are_refused() -> None:
    """Settings the twin cannot serve raise ValueError naming the fix."""
    with pytest.raises(ValueError, match="http2_enabled=false"):
        render(Settings().with_overrides({"http2_enabled": True}), LAYOUT)
    with pytest.raises(ValueError, match="app_cookie_name"):
        render(Settings().with_overrides({"stickiness_type": "app_cookie"}), LAYOUT)


def test_status_matcher_regex_matches_exactly_the_codes() -> None:
    """Every ALB matcher form becomes an expectation that accepts exactly its codes (100-999 checked)."""
    for matcher in ("200", "200-299", "200,204", "200-499", "201-215,302,404-405"):
        expect = status_expectation(matcher)
        wanted: set[int] = set()
        for item in matcher.split(","):
            lo, _, hi = item.partition("-")
            wanted |= set(range(int(lo), int(hi or lo) + 1))
        kind, _, pattern = expect.partition(" ")
        if kind == "status":
            matches = {c for c in range(100, 1000) if str(c) == pattern}
        else:
            matches = {c for c in range(100, 1000) if re.match(pattern, str(c))}
        assert matches == wanted, matcher
    with pytest.raises(ValueError, match="200-299"):
        status_expectation("2xx")


def test_durations_render_in_haproxy_units() -> None:
    """Whole seconds render as Ns, fractions in milliseconds."""
    assert [duration(x) for x in (3, 3.0, 0.25, 1.5, 0.0004)] == ["3s", "3s", "250ms", "1500ms", "1ms"]


@pytest.mark.haproxy
@pytest.mark.parametrize("name", sorted(CASES))
def test_haproxy_accepts_the_rendered_configuration(name: str, tmp_path: Path) -> None:
    """`haproxy -c` (2.6) validates every golden configuration with no warning."""
    binary = shutil.which("haproxy")
    assert binary is not None, "haproxy is not installed: run make system-deps"
    layout = Layout(frontend_port=8000, stats_socket=str(tmp_path / "h.sock"), slots=LAYOUT.slots, time_scale=0.05)
    path = tmp_path / "haproxy.cfg"
    path.write_text(render(CASES[name], layout), encoding="utf-8")
    done = subprocess.run([binary, "-c", "-f", str(path)], capture_output=True, text=True, timeout=20, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "WARNING" not in done.stdout + done.stderr
