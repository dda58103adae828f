"""The compiled load generator (``bench/loadgen/main.go``): build it offline, run it pinned, parse its reports.

Built with the Debian toolchain: ``golang-go`` (Go 1.19) and ``golang-github-gorilla-websocket-dev``
in GOPATH mode (``GO111MODULE=off GOPATH=/usr/share/gocode``), so no module proxy is needed.
:func:`ensure_built` installs the two packages with apt-get when they are missing (root only).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

from bench.peers import BENCH_DIR, taskset

SOURCE = BENCH_DIR / "loadgen" / "main.go"
#: Every file of the generator (one package; ``SOURCE`` has the flags and the modes' summary).
SOURCES = (SOURCE, BENCH_DIR / "loadgen" / "fanout.go")
BINARY = BENCH_DIR / ".build" / "loadgen"
GOPATH = "/usr/share/gocode"
GORILLA = Path(GOPATH) / "src" / "github.com" / "gorilla" / "websocket"
DEBIAN_PACKAGES = ("golang-go", "golang-github-gorilla-websocket-dev")


class LoadgenError(RuntimeError):
    """The generator could not be built or failed; the message says what to do."""


def ensure_built(log: list[str]) -> Path:
    """Build the generator when the binary is missing or older than its source; returns its path.

    Appends what it did (apt-get, go build) to ``log`` for BENCHMARKS.md.
    """
    if shutil.which("go") is None or not GORILLA.is_dir():
        if os.geteuid() != 0:
            raise LoadgenError(f"install the Debian packages {' '.join(DEBIAN_PACKAGES)} (needs root), then rerun")
        log.append(f"apt-get install -y {' '.join(DEBIAN_PACKAGES)}")
        subprocess.run(["apt-get", "install", "-y", "-q", *DEBIAN_PACKAGES], check=True, stdout=subprocess.DEVNULL)
    if BINARY.exists() and BINARY.stat().st_mtime >= max(p.stat().st_mtime for p in SOURCES):
        return BINARY
    BINARY.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GO111MODULE": "off", "GOPATH": GOPATH, "GOCACHE": str(BINARY.parent / "gocache")}
    cmd = ["go", "build", "-o", str(BINARY), *map(str, SOURCES)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise LoadgenError(f"go build failed: {done.stderr.strip()}")
    log.append(
        "GO111MODULE=off GOPATH=/usr/share/gocode go build -o bench/.build/loadgen "
        "bench/loadgen/main.go bench/loadgen/fanout.go"
    )
    return BINARY


def args(mode: str, url: str, tokens: Path, **flags: Any) -> list[str]:
    """The generator's command line for ``mode`` with ``flags`` (``conc=100`` -> ``-conc 100``)."""
    out = [str(BINARY), "-mode", mode, "-url", url, "-tokens", str(tokens)]
    for name, value in flags.items():
        out += [f"-{name}", str(value)]
    return out


def run(mode: str, url: str, tokens: Path, *, core: int | None, timeout_s: float, **flags: Any) -> dict[str, Any]:
    """Run one bounded generator mode pinned to ``core``; returns its JSON report."""
    try:
        done = subprocess.run(
            taskset(core, args(mode, url, tokens, **flags)), capture_output=True, text=True, timeout=timeout_s,
            check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise LoadgenError(f"loadgen {mode} did not finish within {timeout_s:g} s") from None
    if done.returncode != 0:
        raise LoadgenError(f"loadgen {mode} exited {done.returncode}: {done.stderr.strip()[-300:]}")
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise LoadgenError(f"loadgen {mode} printed no report: {done.stderr.strip()[-300:]}")
    report: dict[str, Any] = json.loads(lines[-1])
    return report


class IdleSession:
    """``loadgen -mode idle``: open connections stage by stage; :meth:`next_stage` waits for each report."""

    def __init__(self, url: str, tokens: Path, stages: list[int], *, core: int | None, conc: int) -> None:
        cmd = taskset(core, args("idle", url, tokens, stages=",".join(map(str, stages)), conc=conc))
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            start_new_session=True,
        )  # fmt: skip

    def report(self) -> dict[str, Any]:
        """The next JSON report (blocks until the current stage is open)."""
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise LoadgenError(f"loadgen idle exited with {self.proc.wait(5)} before its report")
        result: dict[str, Any] = json.loads(line)
        return result

    def proceed(self) -> None:
        """Let the generator open the next stage (or close everything after the last)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()

    def finish(self, timeout_s: float) -> None:
        """Close the connections (after the last stage) and wait for the generator to exit (kill on timeout)."""
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def kill(self) -> None:
        """Stop the generator if it still runs (a failed stage: the ``finally`` of every caller)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


class FanoutSession:
    """``loadgen -mode fanout``: subscribers plus a publisher child; one report per phase.

    :meth:`report` blocks for the next JSON report (``ready``, ``a``, ``b``, ``done``); :meth:`proceed`
    starts the next phase; :meth:`finish` closes stdin (publisher and connections closed, ``done``).
    """

    def __init__(self, url: str, tokens: Path, publisher: list[str], *, core: int | None, log_path: Path,
                 **flags: Any) -> None:  # fmt: skip
        cmd = taskset(core, [*args("fanout", url, tokens, **flags), "--", *publisher])
        self.log_path = log_path
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                start_new_session=True,
                cwd=BENCH_DIR.parent,
            )

    def report(self) -> dict[str, Any]:
        """The next JSON report."""
        assert self.proc.stdout is not None
        while line := self.proc.stdout.readline():
            if line.startswith("{"):
                result: dict[str, Any] = json.loads(line)
                return result
        err = self.log_path.read_text(errors="replace")[-300:]
        raise LoadgenError(f"loadgen fanout exited with {self.proc.wait(5)} before its report: {err.strip()}")

    def proceed(self) -> None:
        """Start the next phase."""
        assert self.proc.stdin is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()

    def finish(self, timeout_s: float) -> dict[str, Any]:
        """Close stdin; returns the ``done`` report (the generator is killed when it overruns)."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            done = self.report()
            self.proc.wait(timeout=timeout_s)
            return done
        finally:
            self.kill()

    def kill(self) -> None:
        """Kill the generator (its publisher child is in its process group) if it is still running."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
