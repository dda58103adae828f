"""The README flow: `stickyws twin up`, two `stickyws client`s, `deregister` one server, watch them move, stop."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from stickyws.localproc import pid_alive
from tests.e2e.support import require_binaries
from tests.lines import Stream

BOUND_S = 30.0


class Proc:
    """A child process whose stdout lines are read by a thread and awaited with deadlines."""

    def __init__(self, args: list[str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stickyws.cli", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self.proc.stdout is not None
        self.out = Stream(self.proc.stdout)

    @property
    def lines(self) -> list[str]:
        """The lines read so far."""
        return self.out.lines

    def expect(self, pattern: str, timeout_s: float = BOUND_S) -> re.Match[str]:
        """The first new line matching ``pattern``; fails after ``timeout_s`` with what was seen."""
        return self.out.expect(pattern, timeout_s)

    def type(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def stop(self, sig: int) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=BOUND_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise


@pytest.mark.haproxy
def test_twin_up_two_clients_deregister_and_stop_leave_nothing_behind() -> None:
    """The client on a deregistered server is told to reconnect, resumes on the other one, the other client
    never moves, and SIGTERM to `twin up` stops every process it started."""
    require_binaries()
    short = ["deregistration_delay_s=2", "drain_window_s=1", "shutdown_timeout_s=2", "stop_timeout_s=3"]
    twin = Proc(["twin", "up", "--servers", "2", *(a for s in short for a in ("--set", s))])
    clients: list[Proc] = []
    try:
        url = twin.expect(r"^twin up: (ws://127\.0\.0\.1:\d+/ws)$")[1]
        pids = [int(m) for m in twin.expect(r"^haproxy pid (\d+), redis-server pid (\d+), logs in").groups()]
        logs = Path(twin.lines[-1].split("logs in ", 1)[1])
        for name in ("s1", "s2"):
            pids.append(int(twin.expect(rf"^{name}\s+pid (\d+)\s+127\.0\.0\.1:\d+\s+serving\s+healthy")[1]))
        tokens = {}
        for user in ("alice", "bob"):
            m = twin.expect(rf"^client for {user}: stickyws client (\S+) --token (\S+)$")
            assert m[1] == url
            tokens[user] = m[2]
        twin.expect("type 'help'")
        clients = [Proc(["client", url, "--token", tokens[user], "--quiet-acks"]) for user in ("alice", "bob")]
        first = [c.expect(r"connected\s+server=(s\d) session=(\S+) resumed=no").group(1, 2) for c in clients]
        assert {server for server, _ in first} == {"s1", "s2"}  # round robin, one each

        moving, staying = (0, 1) if first[0][0] == "s1" else (1, 0)
        twin.type("deregister s1")
        twin.expect(r"^s1: drain notice published$")
        clients[moving].expect(r"reconnect\s+server says server_draining")
        moved = clients[moving].expect(r"connected\s+server=(s\d) session=(\S+) resumed=(yes|no)")
        assert moved.groups() == ("s2", first[moving][1], "yes")
        twin.expect(r"^s1: SIGTERM, exited with 0$")
        twin.type("status")
        twin.expect(r"^s1\s+exited\s+127\.0\.0\.1:\d+\s+stopped\s+unused\s+0 connections$")
        twin.expect(r"^s2\s+pid \d+\s+127\.0\.0\.1:\d+\s+serving\s+healthy\s+2 connections$")

        assert [c.stop(signal.SIGINT) for c in clients] == [0, 0]
        summaries = [c.expect(r"^summary\s+connections=(\d+) servers=(\S+) resumed=(\d+)").groups() for c in clients]
        assert summaries[moving] == ("2", "s1>s2", "1")
        assert summaries[staying] == ("1", "s2", "0")
        assert twin.stop(signal.SIGTERM) == 0
        twin.expect(r"^twin: stopped$")
        assert all(not pid_alive(pid) for pid in pids)
        assert not logs.exists()
    finally:
        for p in [*clients, twin]:
            if p.proc.poll() is None:
                p.proc.kill()
                p.proc.wait(timeout=5)


@pytest.mark.haproxy
def test_ctrl_c_stops_twin_up_and_everything_it_started() -> None:
    """SIGINT (Ctrl-C) makes `twin up` stop HAProxy, redis and its server by PID and exit 0."""
    require_binaries()
    twin = Proc(["twin", "up", "--servers", "1"])
    try:
        pids = [int(m) for m in twin.expect(r"^haproxy pid (\d+), redis-server pid (\d+), logs in").groups()]
        pids.append(int(twin.expect(r"^s1\s+pid (\d+)\s+127\.0\.0\.1:\d+\s+serving\s+healthy")[1]))
        twin.expect("type 'help'")
        assert twin.stop(signal.SIGINT) == 0
        twin.expect(r"^twin: stopped$")
        assert all(not pid_alive(pid) for pid in pids)
    finally:
        if twin.proc.poll() is None:
            twin.proc.kill()
            twin.proc.wait(timeout=5)


@pytest.mark.haproxy
def test_twin_up_prints_the_localhost_url_and_reports_how_long_a_killed_servers_clients_were_refused() -> None:
    """The banner gives the listener by name beside its address; `kill s1` prints the measured 503 window,
    the expected one (2 checks x 5 s x 0.05) and the AWS figure (2 x 5 s)."""
    require_binaries()
    checks = ["health_check_interval_s=5", "health_check_timeout_s=2", "unhealthy_threshold_count=2"]
    fast_checks = [a for c in checks for a in ("--set", c)]
    twin = Proc(["twin", "up", "--servers", "2", *fast_checks])
    try:
        port = twin.expect(r"^twin up: ws://127\.0\.0\.1:(\d+)/ws$")[1]
        twin.expect(rf"^same listener: ws://localhost:{port}/ws \(by name: some cookie jars, aiohttp's among them,")
        pids = [int(m) for m in twin.expect(r"^haproxy pid (\d+), redis-server pid (\d+), logs in /\S+$").groups()]
        for name in ("s1", "s2"):
            pids.append(int(twin.expect(rf"^{name}\s+pid (\d+)\s+127\.0\.0\.1:\d+\s+serving\s+healthy")[1]))
        twin.expect("type 'help'")
        twin.type("kill s1")
        twin.expect(r"^s1: SIGKILL$")
        report = twin.expect(
            r"^s1: SIGKILL: its sticky clients were refused \(503\) for (\d+\.\d\d) s \(\d+ requests\) until "
            r"HAProxy's checks marked it down \((\d+\.\d\d) s\) and s2 served them; expected at most 0\.50 s "
            r"\(2 failed checks x 0\.25 s\); on AWS about 10 s \(unhealthy_threshold_count 2 x "
            r"health_check_interval_s 5 s\)$"
        )
        assert 0.2 <= float(report[1]) <= 0.7
        assert twin.stop(signal.SIGTERM) == 0
        twin.expect(r"^twin: stopped$")
        assert all(not pid_alive(pid) for pid in pids)
    finally:
        twin.stop(signal.SIGTERM)  # a failed expectation still stops what the twin started (a no-op after exit)


EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "socketio" / "server.py"


@pytest.mark.haproxy
def test_twin_up_runs_your_server_from_server_cmd_and_reports_its_deregistration() -> None:
    """`--server-cmd` with placeholders and `--health-path` run the Socket.IO example; `deregister` reports."""
    require_binaries()
    cmd = f"{sys.executable} {EXAMPLE} --port {{port}} --server-id {{server_id}} --redis-url {{redis_url}}"
    short = ["--set", "deregistration_delay_s=2", "--set", "drain_window_s=1"]
    twin = Proc(["twin", "up", "--servers", "2", "--server-cmd", cmd, "--health-path", "/health", *short])
    try:
        twin.expect(r"^twin up: http://127\.0\.0\.1:\d+$")  # your server's paths, not the reference /ws
        pids = [int(m) for m in twin.expect(r"^haproxy pid (\d+), redis-server pid (\d+), logs in").groups()]
        for name in ("s1", "s2"):
            pids.append(int(twin.expect(rf"^{name}\s+pid (\d+)\s+127\.0\.0\.1:\d+\s+serving\s+healthy")[1]))
        twin.expect("type 'help'")
        assert not any(line.startswith("client for") for line in twin.lines)  # tokens are for stickyws servers
        twin.type("deregister s1")
        twin.expect(
            r"^s1: deregistered in \d+\.\d s: 0 connections: 0 cut, 0 closed before the cut, "
            r"0 told to reconnect; exit code \S+$"
        )
        assert twin.stop(signal.SIGTERM) == 0
        twin.expect(r"^twin: stopped$")
        assert all(not pid_alive(pid) for pid in pids)
    finally:
        if twin.proc.poll() is None:
            twin.proc.kill()
            twin.proc.wait(timeout=5)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--server-cmd", "node server.js --port {prot}"], r"unknown placeholder \{prot\}.*use \{port\}"),
        (["--server-cmd", "node s.js", "--server-env", "NOEQUALS"], r"--server-env 'NOEQUALS': use NAME=VALUE"),
        (["--set", "stickiness_enabled=false"], r"\[stickiness\].*set stickiness_enabled=true"),
        (["--server-cmd", "node 'unclosed"], r"cannot split the server command"),
    ],
)
def test_twin_up_refuses_bad_server_options_with_the_fix_and_no_traceback(args: list[str], message: str) -> None:
    """A typo in --server-cmd/--server-env, or settings the ALB must not run, exit 2 with one line naming the fix."""
    done = subprocess.run(
        [sys.executable, "-m", "stickyws", "twin", "up", *args],
        capture_output=True,
        text=True,
        timeout=BOUND_S,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2
    assert re.search(message, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout
