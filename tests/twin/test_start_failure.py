"""A server that dies or never gets healthy at start: the error quotes its log and never points at a removed file."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stickyws.localproc import pid_alive
from stickyws.twin.cluster import LOG_TAIL_LINES, TwinCluster, TwinError
from tests.e2e.support import E2E_SETTINGS, TIME_SCALE, require_binaries

pytestmark = pytest.mark.redis

#: Prints 30 numbered lines, then exits 1: a server that fails at boot. (No braces: they are placeholders.)
DIES = [sys.executable, "-c", "import sys\nfor i in range(1, 31): print('boot step', i)\nsys.exit(1)"]
#: Runs but never listens: a server waiting for something that never comes.
HANGS = [sys.executable, "-c", "import time\nprint('waiting for the database', flush=True)\ntime.sleep(60)"]


def _failed_start(twin: TwinCluster) -> str:
    """The message of the error ``twin.start()`` raises, after checking that it left no process behind."""
    with pytest.raises(TwinError) as caught:
        twin.start()
    assert twin.pids() == []
    assert all(not pid_alive(p.proc.pid) for p in twin.procs.values())
    return str(caught.value)


def test_a_server_that_exits_at_start_is_quoted_and_its_removed_workdir_is_not_pointed_at() -> None:
    """The error holds the last 20 lines of the server's log and the fix (--keep-workdir), not the removed path."""
    require_binaries()
    twin = TwinCluster(E2E_SETTINGS, servers=1, time_scale=TIME_SCALE, server_cmd=DIES)
    message = _failed_start(twin)
    assert message.startswith("server s1 did not become healthy: process ")
    assert "exited with 1 before /health answered" in message
    quoted = [f"  | boot step {i}" for i in range(31 - LOG_TAIL_LINES, 31)]
    assert f"server-s1.log (last {LOG_TAIL_LINES} lines):\n" + "\n".join(quoted) + "\n" in message
    assert f"boot step {30 - LOG_TAIL_LINES}\n" not in message
    assert message.endswith("keep them with --keep-workdir (TwinCluster(keep_workdir=True))")
    assert str(twin.dir) not in message
    assert not twin.dir.exists()


def test_keep_workdir_keeps_the_logs_of_a_server_that_never_got_healthy_and_says_where() -> None:
    """With keep_workdir a server that never answers its health path is stopped, quoted, and its log kept."""
    require_binaries()
    twin = TwinCluster(
        E2E_SETTINGS, servers=1, time_scale=TIME_SCALE, server_cmd=HANGS, keep_workdir=True, server_start_timeout_s=1.0
    )
    try:
        message = _failed_start(twin)
        assert re.search(r"^server s1 did not become healthy: GET 127\.0\.0\.1:\d+/health answered None", message)
        assert "server-s1.log (last 1 line):\n  | waiting for the database\n" in message
        assert message.endswith(f"work directory kept: {twin.dir} (server-*.log, haproxy.cfg, haproxy.log)")
        assert (twin.dir / "server-s1.log").read_text() == "waiting for the database\n"
    finally:
        shutil.rmtree(twin.dir, ignore_errors=True)


def test_twin_up_keep_workdir_prints_the_log_tail_and_the_kept_directory_without_a_traceback() -> None:
    """`twin up --keep-workdir` with a --server-cmd that exits 1 fails with exit 1, the tail, and where the logs are."""
    require_binaries()
    cmd = f"{sys.executable} -c \"import sys; print('no config file found'); sys.exit(1)\""
    done = subprocess.run(
        [sys.executable, "-m", "stickyws", "twin", "up", "--servers", "1", "--server-cmd", cmd, "--keep-workdir"],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    kept = re.search(r"work directory kept: (\S+) \(server-\*\.log", done.stderr)
    try:
        assert done.returncode == 1, done.stderr
        assert "server-s1.log (last 1 line):\n  | no config file found\n" in done.stderr
        assert kept is not None, done.stderr
        assert "no config file found" in (Path(kept[1]) / "server-s1.log").read_text()
        assert "Traceback" not in done.stderr + done.stdout
    finally:
        if kept is not None:
            shutil.rmtree(kept[1], ignore_errors=True)

    plain = subprocess.run(
        [sys.executable, "-m", "stickyws", "twin", "up", "--servers", "1", "--server-cmd", cmd],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert plain.returncode == 1
    assert "  | no config file found\n" in plain.stderr
    assert "stickyws-twin-" not in plain.stderr + plain.stdout  # no path to the removed work directory
    assert "--keep-workdir" in plain.stderr
