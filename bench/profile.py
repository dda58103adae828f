"""Profile the reference server under the echo (or handshake) load: py-spy samples, split by part.

    .venv/bin/python -m bench.profile [--duration-s 8] [--registry redis|memory] [--set KEY=VALUE ...]

Starts a redis-server and the reference server (pinned like ``make bench``), runs the generator's
echo mode and records the server with ``py-spy record --format raw`` meanwhile. Each sample is
counted once, under the innermost frame of a known part (``CATEGORIES``, first match from the leaf
up): JSON, the registry commit (the lane, hiredis, the registry module), the WebSocket layer, our core,
the event loop. ``--native`` samples C frames too (system calls, the collector). Prints the split,
the top leaf functions, the echo rate and both processes' CPU.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import generator as loadgen
from bench import peers, scenarios
from bench.run import GEN_CORE, SERVER_CORE, redis_on
from stickyws.settings import Settings

#: ``(category, pattern on a frame's file path)``, checked from the innermost frame outwards.
CATEGORIES: tuple[tuple[str, str], ...] = (
    ("JSON (json/orjson)", r"(^|/)(json/|orjson)|stickyws/(json_)?codec\.py"),
    (
        "registry commit (lane, hiredis, registry module)",
        r"(^|/)(redis/|hiredis)|stickyws/registry/|stickyws/server/(redis_registry|registry|redis_lane|cluster_lanes)\.py",
    ),
    (
        "WebSocket layer (adapter, frames, HTTP head)",
        r"stickyws/server/(ws_adapter|ws_connection|preflight|ws_frames|http_head)\.py",
    ),
    ("our core (stickyws)", r"(^|/)stickyws/"),
    ("event loop (asyncio, uvloop)", r"(^|/)(asyncio/|uvloop)|selectors\.py|loop\.c|_asynciomodule\.c"),
)
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]*)(?::\d+)?\)$")


def categorize(stack: list[str]) -> str:
    """The category of one sample (``stack`` outermost first)."""
    for frame in reversed(stack):
        m = _FRAME.match(frame)
        path = m.group("file") if m else frame
        for name, pattern in CATEGORIES:
            if re.search(pattern, path):
                return name
    return "other"


def summarize(raw: str) -> tuple[collections.Counter[str], collections.Counter[str], int]:
    """``(samples per category, samples per leaf function, total)`` of py-spy's raw (collapsed) output."""
    cats: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.splitlines():
        stack_text, _, count_text = line.rpartition(" ")
        if not stack_text or not count_text.isdigit():
            continue
        count = int(count_text)
        stack = stack_text.split(";")
        cats[categorize(stack)] += count
        leaf = stack[-1]
        m = _FRAME.match(leaf)
        leaves[f"{m.group('func')} ({Path(m.group('file')).name})" if m else leaf] += count
        total += count
    return cats, leaves, total


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.profile", description=__doc__.split("\n\n")[0])
    p.add_argument("--duration-s", type=float, default=8.0)
    p.add_argument("--scenario", choices=("echo", "handshake"), default="echo")
    p.add_argument("--conc", type=int, default=100)
    p.add_argument("--registry", choices=("redis", "memory"), default="redis")
    p.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    p.add_argument("--set", action="append", default=[], help="setting override KEY=VALUE (repeatable)")
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--raw", type=Path, help="also keep py-spy's raw output here")
    p.add_argument("--native", action="store_true", help="sample C frames too (uvloop, hiredis, orjson, syscalls)")
    p.add_argument("--env", action="append", default=[], help="extra server environment KEY=VALUE (repeatable)")
    args = p.parse_args(argv)
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(pyspy).exists():
        print("bench.profile: py-spy is missing: pip install -c constraints.txt 'py-spy>=0.4.3' (the bench extra)")
        return 2
    loadgen.ensure_built([])
    overrides = dict(item.split("=", 1) for item in args.set)
    settings = Settings().with_overrides(overrides)
    with tempfile.TemporaryDirectory(prefix="stickyws-profile-") as tmp, redis_on(GEN_CORE) as redis_server:
        workdir = Path(tmp)
        secret = secrets.token_urlsafe(32)
        tokens = scenarios.write_tokens(settings, secret, workdir, args.conc + 20_000)
        server = peers.start("reference", settings=settings, secret=secret, redis_url=redis_server.url,
                             core=SERVER_CORE, workdir=workdir, tag="profile", registry=args.registry,
                             extra_env=dict(item.split("=", 1) for item in args.env))  # fmt: skip
        native = ["--native"] if args.native else ["--nonblocking"]  # py-spy samples C frames only while it pauses
        try:
            loadgen.run("echo", server.url, tokens["reference"], core=GEN_CORE, timeout_s=60, conc=args.conc,
                        duration=1)  # fmt: skip  # warm-up
            out = workdir / "profile.txt"
            spy = subprocess.Popen(
                [pyspy, "record", "--pid", str(server.pid), "--rate", str(args.rate), "--duration",
                 str(int(args.duration_s)), "--format", "raw", "--output", str(out), *native],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
            )  # fmt: skip
            time.sleep(0.5)
            assert redis_server.pid is not None
            cpu0, redis0, t0 = server.cpu_s(), peers.process_cpu_s(redis_server.pid), time.monotonic()
            rep = loadgen.run(args.scenario, server.url, tokens["reference"], core=GEN_CORE,
                              timeout_s=args.duration_s + 60, conc=args.conc, duration=args.duration_s - 1)  # fmt: skip
            elapsed = time.monotonic() - t0
            server_cores = (server.cpu_s() - cpu0) / elapsed
            redis_cores = (peers.process_cpu_s(redis_server.pid) - redis0) / elapsed
            try:
                _, err = spy.communicate(timeout=args.duration_s + 30)
            except subprocess.TimeoutExpired:
                os.killpg(spy.pid, 9)
                spy.wait(5)
                raise
            if not out.exists():
                print(f"bench.profile: py-spy wrote nothing: {err.decode(errors='replace').strip()[-300:]}")
                return 1
            if args.raw is not None:
                shutil.copy(out, args.raw)
            cats, leaves, total = summarize(out.read_text())
        finally:
            server.stop()
    print(f"{args.scenario} {rep['rate_per_s']:,.0f}/s ({args.registry} registry, {args.conc} connections"
          f"{', ' + ', '.join(args.set) if args.set else ''}); server {server_cores:.2f} cores, "
          f"generator {rep['gen_cpu_cores']:.2f} cores; {total} samples")  # fmt: skip
    us_per_msg = server_cores * 1e6 / rep["rate_per_s"] if rep["rate_per_s"] else 0.0
    redis_us = redis_cores * 1e6 / rep["rate_per_s"] if rep["rate_per_s"] else 0.0
    unit = "message" if args.scenario == "echo" else "handshake"
    print(f"server CPU per {unit}: {us_per_msg:.0f} us; Redis {redis_cores:.2f} cores, {redis_us:.0f} us per {unit}")
    for name, n in cats.most_common():
        print(f"  {100 * n / total:5.1f} %  {us_per_msg * n / total:5.0f} us  {name}")
    print("top leaf functions:")
    for name, n in leaves.most_common(args.top):
        print(f"  {100 * n / total:5.1f} %  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
