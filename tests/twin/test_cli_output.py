"""`twin up` whose output nobody reads any more still stops everything it started on SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from stickyws.localproc import pid_alive
from tests.e2e.support import require_binaries

BOUND_S = 30.0


@pytest.mark.haproxy
def test_sigterm_after_the_reader_closed_stdout_leaves_no_process() -> None:
    """With its stdout pipe closed by the reader, SIGTERM makes `twin up` stop HAProxy, redis and the
    server by PID and exit 0 (no BrokenPipeError on the way out); before that, the demo page link it
    printed is served."""
    require_binaries()
    proc = subprocess.Popen(
        [sys.executable, "-m", "stickyws.cli", "twin", "up", "--servers", "1"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    pids: list[int] = []
    demo = ""
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + BOUND_S
        seen: list[str] = []
        for line in proc.stdout:
            seen.append(line)
            if m := re.match(r"^haproxy pid (\d+), redis-server pid (\d+), logs in", line):
                pids += [int(m[1]), int(m[2])]
            if m := re.match(r"^s1\s+pid (\d+)", line):
                pids.append(int(m[1]))
            if m := re.match(
                r"^demo page: (http://127\.0\.0\.1:\d+/stickyws-demo\.html)#tokens=alice:\S+,bob:\S+$", line
            ):
                demo = m[1]
            if line.startswith("type 'help'") or time.monotonic() > deadline:
                break
        if len(pids) != 3:
            proc.wait(timeout=BOUND_S)
            raise AssertionError(
                "twin up did not start:\n" + "".join(seen) + (proc.stderr.read() if proc.stderr else "")
            )
        with urllib.request.urlopen(demo, timeout=5) as page:  # the link `twin up` prints is served
            assert page.headers["Content-Type"] == "text/html; charset=utf-8"
            assert b'import { StickyClient } from "./stickyws-client.js";' in page.read()
        proc.stdout.close()  # nobody reads the twin's output any more
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=BOUND_S) == 0
        assert proc.stderr is not None
        stderr = proc.stderr.read()
        assert "BrokenPipeError" not in stderr
        assert [pid for pid in pids if pid_alive(pid)] == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
