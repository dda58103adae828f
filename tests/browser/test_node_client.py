"""stickyws-client.js under Node (the `ws` package): protocol tests against a fake endpoint, and a real
deregistration through the twin."""

from __future__ import annotations

import json
import queue
import re
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from stickyws.twin.cluster import TwinCluster

NODE_DIR = Path(__file__).parent / "node"
BOUND_S = 60.0


def test_the_module_passes_its_protocol_tests_under_node(node_modules: Path) -> None:
    """Every protocol test (dedup of messages and publications, gap, unrecoverable, resume with since,
    outbox trim, reconnect instruction, pre-flight verdicts, retry budget, online/offline and
    visibility) passes under `node --test`."""
    suites = sorted(NODE_DIR.glob("*.test.mjs"))
    assert [s.name for s in suites] == ["environment.test.mjs", "protocol.test.mjs"]
    expected = sum(len(re.findall(r"^test\(", s.read_text(encoding="utf-8"), flags=re.M)) for s in suites)
    done = subprocess.run(
        ["node", "--test", "--test-reporter=tap", *(s.name for s in suites)],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=BOUND_S,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert f"# pass {expected}\n" in done.stdout
    assert "# fail 0\n" in done.stdout


@pytest.mark.haproxy
def test_node_client_resumes_across_a_deregistration_with_every_message_acked_and_echoed_once(
    twin: TwinCluster, node_modules: Path
) -> None:
    """A Node client sending numbered messages through the twin while its server is deregistered moves
    to another server with the same session: every message acknowledged once, every echo received
    once and in order, lastSeq equal to the number of echoes."""
    proc = subprocess.Popen(
        ["node", "through_twin.mjs", twin.url, twin.token("node-user"), "40"],
        cwd=NODE_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[dict[str, Any] | None] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(json.loads(line))
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    deregistering: threading.Thread | None = None
    summary: dict[str, Any] | None = None
    try:
        deadline = time.monotonic() + BOUND_S
        while summary is None:
            item = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            assert item is not None, "node exited early: " + (proc.stderr.read() if proc.stderr else "")
            if item.get("event") == "open" and deregistering is None:
                first = item["detail"]["serverId"]
                deregistering = threading.Thread(target=twin.deregister, args=(first,), daemon=True)
                deregistering.start()
            summary = item.get("summary")
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
        if deregistering is not None:
            deregistering.join(timeout=BOUND_S)
    sent = summary["sent"]
    assert sent >= 40
    assert summary["ackCounts"] == {str(i): 1 for i in range(1, sent + 1)}
    assert summary["echoes"] == list(range(1, sent + 1))
    assert summary["lastSeq"] == sent
    servers, sessions = summary["servers"], summary["sessions"]
    assert len(servers) == 2
    assert servers[0] != servers[1]
    assert sessions[0] == sessions[1]
    assert summary["resumed"] == [False, True]
    assert summary["errors"] == []
