"""The twin's production rule as a weighted forward between two backends, and the counters it is measured by."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from stickyws.settings import Settings
from stickyws.twin.haproxy_config import ALTERNATE_BACKEND, BACKEND, Layout, Slot, render
from stickyws.twin.runtime_api import parse_total_sessions

SLOTS = [Slot("s1", 9001), Slot("s2", 9002), Slot("s3")]


def _sections(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    current = ""
    for line in text.splitlines():
        if line and not line.startswith((" ", "#")):
            current = line.strip()
            out[current] = []
        elif line.strip() and current:
            out[current].append(line.strip())
    return out


def test_without_a_weights_map_there_is_one_backend() -> None:
    """A layout without ``weights_map`` renders no alternate backend and no weighted forward."""
    text = render(Settings(), Layout(frontend_port=1, stats_socket="/tmp/x.sock", slots=SLOTS))
    assert ALTERNATE_BACKEND not in text
    assert "rand(" not in text


def test_the_weighted_forward_picks_a_backend_before_any_cookie() -> None:
    """The frontend draws per request against the map's weight; both backends route on the same cookie and
    every slot of the alternate backend starts in maintenance."""
    layout = Layout(frontend_port=1, stats_socket="/tmp/x.sock", slots=SLOTS, weights_map="/tmp/w.map")
    sections = _sections(render(Settings(), layout))
    frontend = sections["frontend ws_listener"]
    assert frontend[-3:] == [
        "http-request set-var(txn.alternate_weight) str(ws_alternate),map_str_int(/tmp/w.map,0)",
        "use_backend ws_alternate if { rand(10000),sub(txn.alternate_weight) lt 0 }",
        f"default_backend {BACKEND}",
    ]
    blue, green = sections[f"backend {BACKEND}"], sections[f"backend {ALTERNATE_BACKEND}"]
    cookie = 'cookie AWSALB insert indirect nocache maxidle 86400s maxlife 86400s attr "Max-Age=86400"'
    assert cookie in blue
    assert cookie in green
    assert [line for line in green if line.startswith("server ")] == [
        "server s1 127.0.0.1:1 check cookie s1 disabled",
        "server s2 127.0.0.1:1 check cookie s2 disabled",
        "server s3 127.0.0.1:1 check cookie s3 disabled",
    ]
    assert "server s1 127.0.0.1:9001 check cookie s1" in blue


@pytest.mark.haproxy
def test_haproxy_accepts_the_weighted_forward(tmp_path: Path) -> None:
    """`haproxy -c` (2.6) validates the two-backend configuration with no warning."""
    binary = shutil.which("haproxy")
    assert binary is not None, "haproxy is not installed: run make system-deps"
    weights = tmp_path / "weights.map"
    weights.write_text(f"{ALTERNATE_BACKEND} 0\n", encoding="utf-8")
    layout = Layout(frontend_port=8000, stats_socket=str(tmp_path / "h.sock"), slots=SLOTS, weights_map=str(weights))
    path = tmp_path / "haproxy.cfg"
    path.write_text(render(Settings(), layout), encoding="utf-8")
    done = subprocess.run([binary, "-c", "-f", str(path)], capture_output=True, text=True, timeout=20, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "WARNING" not in done.stdout + done.stderr


def test_total_sessions_are_read_per_backend() -> None:
    """``stot`` per server of one backend, from a ``show stat`` answer holding both backends."""
    stat = """# pxname,svname,qcur,qmax,scur,smax,slim,stot
ws_listener,FRONTEND,,,5,9,9985,70
ws_targets,s1,0,0,3,4,,20
ws_targets,BACKEND,0,0,3,4,,20
ws_alternate,s3,0,0,1,2,,50
ws_alternate,BACKEND,0,0,1,2,,50
"""
    assert parse_total_sessions(stat, BACKEND) == {"s1": 20}
    assert parse_total_sessions(stat, ALTERNATE_BACKEND) == {"s3": 50}
