"""Synth and test cost: ``make synth`` against a minimal aws_ecs_patterns app, and ``make test`` wall time.

Both synths are cold processes run the same way (the CDK CLI, ``--quiet``, built-in validation on as
``make synth`` has it), each into its own temporary output directory so the repository's ``cdk.out``
is left alone; alternated, median of ``rounds``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.peers import BENCH_DIR

ROOT = BENCH_DIR.parent
MINIMAL_APP = BENCH_DIR / "minimal-app"
RECORDED_TEST = BENCH_DIR / "results" / "make-test.json"
CDK_ENV = {"JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20", "CDK_DISABLE_CLI_TELEMETRY": "true"}
SYNTH_TIMEOUT_S = 180.0


def _timed(cmd: list[str], cwd: Path, timeout_s: float) -> float:
    env = {**os.environ, **CDK_ENV}
    t0 = time.monotonic()
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout_s, check=False)
    wall = time.monotonic() - t0
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {(done.stderr or done.stdout)[-400:]}")
    return wall


def synth_commands(out: Path) -> dict[str, tuple[list[str], Path]]:
    """The two synth commands (``project``: ``make synth``; ``minimal``: the pattern app), by name."""
    return {
        "project": (["make", "-s", "synth", f"CDK_ARGS=--output {out / 'project'}"], ROOT),
        "minimal": (["npx", "--no-install", "cdk", "synth", "--quiet", "--output", str(out / "minimal")], MINIMAL_APP),
    }


def run_synth(rounds: int, say: Callable[[str], None]) -> dict[str, Any]:
    """Alternate the two synths ``rounds`` times; medians and the ratio."""
    times: dict[str, list[float]] = {"project": [], "minimal": []}
    with tempfile.TemporaryDirectory(prefix="stickyws-bench-synth-") as tmp:
        commands = synth_commands(Path(tmp))
        for r in range(rounds):
            order = ("project", "minimal") if r % 2 == 0 else ("minimal", "project")
            for name in order:
                cmd, cwd = commands[name]
                times[name].append(_timed(cmd, cwd, SYNTH_TIMEOUT_S))
            say(f"  synth round {r + 1}: make synth {times['project'][-1]:.1f} s, "
                f"minimal pattern app {times['minimal'][-1]:.1f} s")  # fmt: skip
    project, minimal = statistics.median(times["project"]), statistics.median(times["minimal"])
    return {"project_s": project, "minimal_s": minimal, "ratio": project / minimal, "samples": times}


def run_make_test(timeout_s: float) -> dict[str, Any]:
    """Run ``make test`` once and record its wall time (also in bench/results/make-test.json)."""
    env = {**os.environ, **CDK_ENV}
    t0 = time.monotonic()
    done = subprocess.run(["make", "test"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout_s,
                          check=False)  # fmt: skip
    wall = time.monotonic() - t0
    lines = (done.stdout or "").strip().splitlines()
    summary = next((line.strip("= ") for line in reversed(lines) if " passed" in line or " failed" in line), "")
    result = {"wall_s": wall, "exit_code": done.returncode, "summary": summary, "measured_at": time.time(),
              "source": "measured in this run"}  # fmt: skip
    RECORDED_TEST.parent.mkdir(parents=True, exist_ok=True)
    RECORDED_TEST.write_text(json.dumps(result, indent=2) + "\n")
    return result


def recorded_make_test() -> dict[str, Any] | None:
    """The last recorded ``make test`` run, or ``None``."""
    if not RECORDED_TEST.exists():
        return None
    result: dict[str, Any] = json.loads(RECORDED_TEST.read_text())
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(result["measured_at"]))
    result["source"] = f"recorded by an earlier `make bench` ({when})"
    return result
