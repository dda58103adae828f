"""``make bench``: run every scenario, print the table, write BENCHMARKS.md and bench/ratios.png.

    .venv/bin/python -m bench.run [--rounds 5] [--memory-rounds 3] [--duration-s 3] [--storm-clients 3000]
                                  [--fanout-rounds 3] [--fanout-subscribers 10000] [--fanout-rate 1000]
                                  [--synth-rounds 3] [--make-test auto|run|recorded|skip] [--quick]
                                  [--skip traffic,idle,fanout,storm,migration,shards,growth,synth]
                                  [--shard-rounds 3] [--shard-servers 3] [--only shards|migration|growth|memory-echo]
                                  [--growth-rounds 3] [--growth-parts server,memory,fleet]
                                  [--migration-clients 3000]

A run that skips stages keeps those stages' results from the last stored run on the page (a note says so).
``--render-only`` runs nothing: it writes BENCHMARKS.md, the chart and the targets table of bench/findings.md
again from the last run's stored results (bench/results/last-run.json); ``render()`` returns that page.

Bounded: every generator run has a timeout, the storm has one, synths and ``make test`` have one;
``--make-test auto`` runs ``make test`` only when the run so far leaves room for it inside
``--budget-s`` (else it reads the value an earlier run recorded, and says so).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import secrets
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import capacity, cost, fanout, growth, migration, report, scenarios, shards, storm, variants
from bench import generator as loadgen
from bench.host import FD_SPARE, GEN_CORE, SERVER_CORE, raise_nofile, redis_on
from bench.peers import BENCH_DIR
from stickyws import compiled
from stickyws.settings import Settings

ROOT = BENCH_DIR.parent
OUTPUT = ROOT / "BENCHMARKS.md"
CHART = BENCH_DIR / "ratios.png"
RESULTS = BENCH_DIR / "results" / "last-run.json"
FINDINGS = BENCH_DIR / "findings.md"
#: The reference server's connection limit is raised for the 20k stage (the Node peer has none).
BENCH_OVERRIDES = {"max_connections": 30_000}


def say(line: str) -> None:
    print(line, flush=True)


def _cmd(args: list[str]) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(args, capture_output=True, text=True, timeout=30, check=False)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    return "not found"


def _node_pkg(name: str, peer: str = "node-peer") -> str:
    path = BENCH_DIR / peer / "node_modules" / name / "package.json"
    return json.loads(path.read_text())["version"] if path.exists() else "missing"


def machine() -> dict[str, str]:
    """Machine and versions for the page."""
    from importlib.metadata import version

    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError):
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "machine": f"{cpu}, {os.cpu_count()} cores, {mem_kb / 1024 / 1024:.1f} GiB, {platform.platform()}",
        "python": f"{platform.python_version()}, the server's per-message path {compiled.state().describe()}; "
        f"uvloop {version('uvloop')}, orjson {version('orjson')}, "
        f"hiredis {version('hiredis')}, websockets {version('websockets')} (its mask helper), "
        f"redis-py {version('redis')}, PyJWT {version('PyJWT')}, aiohttp {version('aiohttp')} (the publish "
        "endpoint)",
        "node": f"{_cmd(['node', '--version'])}; ws {_node_pkg('ws')}, ioredis {_node_pkg('ioredis')}, "
        f"jsonwebtoken {_node_pkg('jsonwebtoken')}; socket.io {_node_pkg('socket.io', 'socketio-peer')}, "
        f"@socket.io/redis-adapter {_node_pkg('@socket.io/redis-adapter', 'socketio-peer')}, "
        f"@socket.io/redis-emitter {_node_pkg('@socket.io/redis-emitter', 'socketio-peer')}",
        "redis": _cmd(["redis-server", "--version"]),
        "haproxy": _cmd(["haproxy", "-v"]),
        "go": _cmd(["go", "version"]),
        "cdk": f"aws-cdk-lib {version('aws-cdk-lib')}, CLI {_cmd(['npx', '--no-install', 'cdk', '--version'])}",
    }


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5, help="rounds of scenarios 1-2 (alternated)")
    p.add_argument("--memory-rounds", type=int, default=3, help="rounds of scenario 3 (alternated)")
    p.add_argument("--duration-s", type=float, default=3.0, help="seconds per generator run")
    p.add_argument("--conc", type=int, default=100, help="concurrent connections in scenarios 1-2")
    p.add_argument("--latency-rate", type=float, default=1000.0, help="fixed total message rate for p50/p99")
    p.add_argument("--stages", default="1000,10000,20000", help="idle connection counts")
    p.add_argument("--storm-clients", type=int, default=3000)
    p.add_argument("--migration-clients", type=int, default=3000, help="clients moved by scenario 7's deploys")
    p.add_argument("--synth-rounds", type=int, default=3)
    p.add_argument("--make-test", choices=("auto", "run", "recorded", "skip"), default="auto")
    p.add_argument("--budget-s", type=float, default=1000.0, help="wall-time budget of the whole run")
    p.add_argument("--fanout-rounds", type=int, default=3, help="rounds of scenarios 5-6 (alternated)")
    p.add_argument("--fanout-subscribers", type=int, default=10_000, help="subscribers of scenarios 5-6")
    p.add_argument("--fanout-topics", type=int, default=1000, help="topics of the steady stream (scenario 6)")
    p.add_argument("--fanout-reps", type=int, default=10, help="publications to all subscribers (scenario 5)")
    p.add_argument("--fanout-rate", type=float, default=1000.0, help="publications/s of the steady stream")
    p.add_argument("--fanout-duration-s", type=float, default=5.0, help="seconds of the steady stream")
    p.add_argument(
        "--skip", default="", help="comma-separated: traffic,idle,fanout,storm,migration,shards,growth,synth"
    )
    p.add_argument("--shard-rounds", type=int, default=3, help="rounds of the registry-shards scenario (alternated)")
    p.add_argument("--shard-servers", type=int, default=3, help="reference servers per registry in that scenario")
    p.add_argument(
        "--only",
        choices=("shards", "migration", "growth", "memory-echo"),
        help="run only this scenario; it replaces its part of the last run",
    )
    p.add_argument("--growth-rounds", type=int, default=3, help="rounds of the growth scenario")
    p.add_argument("--growth-parts", default="server,memory,fleet", help="growth parts to run (comma-separated)")
    p.add_argument("--quick", action="store_true", help="tiny run for development (not for the page)")
    p.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    p.add_argument(
        "--render-only",
        action="store_true",
        help="rewrite BENCHMARKS.md, the chart and the findings' targets from the last run",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.memory_rounds, args.duration_s, args.stages = 1, 1, 1.0, "1000"
        args.storm_clients, args.synth_rounds, args.make_test = 300, 1, "recorded"
        args.migration_clients = 300
        args.fanout_rounds, args.fanout_subscribers, args.fanout_topics, args.fanout_reps = 1, 1000, 100, 3
        args.fanout_duration_s = 1.0
        args.shard_rounds = 1
        args.growth_rounds = 1
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.render_only:
        if not RESULTS.exists():
            say(f"bench: no {RESULTS.relative_to(ROOT)} yet: run make bench first")
            return 2
        write_outputs(json.loads(RESULTS.read_text()))
        return 0
    if args.only == "shards":
        return _only_shards(args)
    if args.only == "migration":
        return _only_migration(args)
    if args.only == "growth":
        return _only_growth(args)
    if args.only == "memory-echo":
        return _only_memory_echo(args)
    started = time.monotonic()
    skip = set(filter(None, args.skip.split(",")))
    commands: list[str] = []
    notes: list[str] = []
    nofile = raise_nofile()
    stages = [int(s) for s in args.stages.split(",")]
    if max(stages) + scenarios.IDLE_BASELINE + FD_SPARE > nofile:
        fitted = [n for n in stages if n + scenarios.IDLE_BASELINE + FD_SPARE <= nofile]
        top = (nofile - scenarios.IDLE_BASELINE - FD_SPARE) // 500 * 500
        stages = [*fitted, top]
        notes.append(
            f"The open-file limit is {nofile:,} and cannot be raised here (hard RLIMIT_NOFILE without "
            f"CAP_SYS_RESOURCE), so the largest idle stage is {top:,} connections instead of "
            f"{max(int(s) for s in args.stages.split(',')):,}; on a host that allows it, `ulimit -Hn 65536` first."
        )
        args.stages = ",".join(map(str, stages))
        say("bench: " + notes[-1])
    if "fanout" not in skip and args.fanout_subscribers + FD_SPARE > nofile:
        wanted, args.fanout_subscribers = args.fanout_subscribers, (nofile - FD_SPARE) // 1000 * 1000
        notes.append(
            f"The open-file limit is {nofile:,}, so the fan-out scenarios use {args.fanout_subscribers:,} "
            f"subscribers instead of {wanted:,}."
        )
        say("bench: " + notes[-1])
    loadgen.ensure_built(commands)
    if not (BENCH_DIR / "node-peer" / "node_modules" / "ws").is_dir():
        commands.append("cd bench/node-peer && npm ci")
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=BENCH_DIR / "node-peer",
                       check=True)  # fmt: skip
    if "fanout" not in skip and not (BENCH_DIR / "socketio-peer" / "node_modules" / "socket.io").is_dir():
        commands.append("cd bench/socketio-peer && npm ci")
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=BENCH_DIR / "socketio-peer",
                       check=True)  # fmt: skip
    settings = Settings().with_overrides(BENCH_OVERRIDES)
    info = machine()
    say("stickyws benchmarks: " + info["machine"])
    traffic: list[dict[str, Any]] = []
    idle: list[dict[str, Any]] = []
    fan: list[dict[str, Any]] = []
    storm_result: dict[str, Any] | None = None
    migration_records: list[dict[str, Any]] | None = None
    synth: dict[str, Any] | None = None
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="stickyws-bench-") as tmp:
        workdir = Path(tmp)
        with redis_on(GEN_CORE) as redis_server:
            secret = secrets.token_urlsafe(32)
            tokens = scenarios.write_tokens(settings, secret, workdir, max(max(stages), args.fanout_subscribers) + 2000)
            b = scenarios.Bench(settings, secret, redis_server.url, tokens, SERVER_CORE, GEN_CORE, workdir)
            if "traffic" not in skip:
                t0 = time.monotonic()
                say(f"scenarios 1-2: {args.rounds} rounds x 2 peers, {args.duration_s:g} s each, {args.conc} clients")
                traffic = variants.run_traffic(b, args.rounds, args.duration_s, args.conc, args.latency_rate, say)
                timings["traffic"] = time.monotonic() - t0
            if "idle" not in skip:
                t0 = time.monotonic()
                say(f"scenario 3: {args.memory_rounds} rounds x 2 peers, stages {stages}")
                idle = scenarios.run_idle(b, args.memory_rounds, stages, 200, say)
                timings["idle"] = time.monotonic() - t0
            if "fanout" not in skip:
                t0 = time.monotonic()
                say(f"scenarios 5-6: fan-out, {args.fanout_rounds} rounds x 2 peers, {args.fanout_subscribers:,} "
                    f"subscribers; {args.fanout_reps} publications to all, then {args.fanout_rate:g}/s to "
                    f"{args.fanout_topics:,} topics for {args.fanout_duration_s:g} s")  # fmt: skip
                fan = fanout.run_fanout(b, args.fanout_rounds, args.fanout_subscribers, args.fanout_topics,
                                        args.fanout_reps, args.fanout_rate, args.fanout_duration_s, say)  # fmt: skip
                timings["fanout"] = time.monotonic() - t0
        if "storm" not in skip:
            t0 = time.monotonic()
            say(f"scenario 4: reconnect storm, {args.storm_clients} clients, 3 servers behind the twin")
            storm_result = storm.run_storm(settings, args.storm_clients, SERVER_CORE, GEN_CORE, say)
            timings["storm"] = time.monotonic() - t0
        if "migration" not in skip:
            t0 = time.monotonic()
            migration_records = _migration(args, settings)
            timings["migration"] = time.monotonic() - t0
        shard_records: list[dict[str, Any]] | None = None
        shard_meta: dict[str, Any] | None = None
        if "shards" not in skip:
            t0 = time.monotonic()
            shard_records, shard_meta = _shards(args, settings, workdir)
            timings["shards"] = time.monotonic() - t0
        growth_stored: dict[str, Any] | None = None
        if "growth" not in skip:
            t0 = time.monotonic()
            growth_stored = _growth(args, settings, workdir, nofile)
            timings["growth"] = time.monotonic() - t0
    if "synth" not in skip:
        t0 = time.monotonic()
        say(f"synth cost: make synth vs the minimal pattern app, {args.synth_rounds} rounds alternated")
        synth = cost.run_synth(args.synth_rounds, say)
        timings["synth"] = time.monotonic() - t0
    test = _make_test(args, started, say)
    rs = report.rows(traffic, idle, storm_result, synth, test, fan) + migration.rows(migration_records)
    rs += shards.rows(shard_records) + growth.rows(growth_stored)
    say("")
    say(report.table(rs))
    say("")
    for line in report.verdict_lines(rs):
        say(line)
    if "traffic" not in skip:
        say("NOT MEASURED fan-out and push throughput: not among these scenarios (no regression check in this run)")
    total_s = time.monotonic() - started
    say(f"\nbench: {total_s:.0f} s in all ({', '.join(f'{k} {v:.0f} s' for k, v in timings.items())})")
    if args.quick or args.no_write:
        return 0
    stored = {
        "written_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "args": vars(args),
        "machine": info,
        "commands": commands,
        "notes": notes,
        "traffic": traffic,
        "idle": idle,
        "fanout": fan,
        "storm": storm_result,
        "migration": migration_records,
        "synth": synth,
        "shards": shard_records,
        "growth": growth_stored,
        "shards_meta": shard_meta,
        "make_test": test,
        "timings_s": timings,
        "total_s": total_s,
    }
    if skip and RESULTS.exists():
        stored = keep_skipped(stored, json.loads(RESULTS.read_text()), skip)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(stored, indent=1) + "\n")
    write_outputs(stored)
    return 0


#: Per stage: its key in the stored results and the arguments that describe it on the page.
STAGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "traffic": ("traffic", ("rounds", "duration_s", "conc", "latency_rate")),
    "idle": ("idle", ("memory_rounds", "stages")),
    "fanout": (
        "fanout",
        tuple(f"fanout_{k}" for k in ("rounds", "subscribers", "topics", "reps", "rate", "duration_s")),
    ),
    "storm": ("storm", ("storm_clients",)),
    "migration": ("migration", ("migration_clients",)),
    "synth": ("synth", ("synth_rounds",)),
    "growth": ("growth", ("growth_rounds",)),
}


JOINED_NOTE = "This page joins runs (same machine, same method): "


def keep_skipped(stored: dict[str, Any], previous: dict[str, Any], skip: set[str]) -> dict[str, Any]:
    """``stored`` with the stages in ``skip`` (and ``make test`` when not measured) taken from ``previous``,
    the last stored run, so the page stays whole. ``stage_runs`` records when each stage was measured, and
    one note on the page says which stages come from which run."""
    out = {
        **stored,
        "args": dict(stored["args"]),
        "timings_s": dict(stored["timings_s"]),
        "notes": [n for n in stored["notes"] if not n.startswith(JOINED_NOTE)],
    }
    measured_at = dict.fromkeys((s for s in STAGES if s not in skip), stored["written_at"])
    before = previous.get("stage_runs", {})
    for stage in sorted(skip & STAGES.keys()):
        key, arg_names = STAGES[stage]
        if previous.get(key):
            out[key] = previous[key]
            out["args"].update({a: previous["args"][a] for a in arg_names if a in previous.get("args", {})})
            if stage in previous.get("timings_s", {}):
                out["timings_s"][stage] = previous["timings_s"][stage]
            measured_at[stage] = before.get(stage, previous.get("written_at", "an earlier run"))
    if out["make_test"] is None and previous.get("make_test"):
        out["make_test"] = dict(previous["make_test"])
        if out["make_test"].get("source") == "measured in this run":
            out["make_test"]["source"] = f"recorded by an earlier `make bench` ({previous.get('written_at', '?')})"
    out["stage_runs"] = measured_at
    out["notes"] += [n for n in previous.get("notes", []) if n not in out["notes"] and not n.startswith(JOINED_NOTE)]
    runs: dict[str, list[str]] = {}
    for stage, when in measured_at.items():
        if stage not in skip or out.get(STAGES[stage][0]):
            runs.setdefault(when, []).append(stage)
    if len(runs) > 1:
        out["notes"].append(JOINED_NOTE + "; ".join(f"{', '.join(st)} from the run of {when}"
                                                    for when, st in sorted(runs.items())) + ".")  # fmt: skip
    return out


def result_rows(stored: dict[str, Any]) -> list[report.Row]:
    """The results table's rows from one run's stored results."""
    rs = report.rows(stored["traffic"], stored["idle"], stored["storm"], stored["synth"], stored["make_test"],
                     stored.get("fanout", []))  # fmt: skip
    return (
        rs
        + migration.rows(stored.get("migration"))
        + shards.rows(stored.get("shards"))
        + growth.rows(stored.get("growth"))
    )


def render(stored: dict[str, Any]) -> str:
    """BENCHMARKS.md from one run's stored results: the same text for the same results (reads no other file)."""
    return page(result_rows(stored), stored)


def write_outputs(stored: dict[str, Any]) -> None:
    """Write BENCHMARKS.md, the chart and the targets table of bench/findings.md from one run's stored results
    (also ``--render-only``)."""
    OUTPUT.write_text(render(stored))
    say(f"wrote {OUTPUT.relative_to(ROOT)} (results: {RESULTS.relative_to(ROOT)})")
    try:
        FINDINGS.write_text(report.replace_targets_table(FINDINGS.read_text()))
    except (OSError, ValueError) as exc:
        say(f"bench: the targets table of {FINDINGS.relative_to(ROOT)} was not written: {exc}")
    else:
        say(f"wrote the targets table of {FINDINGS.relative_to(ROOT)}")
    try:
        capacity.write_doc(stored)
    except (OSError, ValueError) as exc:
        say(f"bench: the capacity table of {capacity.DOC.relative_to(ROOT)} was not written: {exc}")
    else:
        say(f"wrote the capacity table of {capacity.DOC.relative_to(ROOT)}")
    try:
        report.chart(result_rows(stored), CHART)
    except ModuleNotFoundError as exc:
        say(f"bench: {exc.name} is not installed, so {CHART.relative_to(ROOT)} was left as it was: "
            "`pip install -e '.[bench]'` (or `make bench`) installs it")  # fmt: skip
    else:
        say(f"wrote {CHART.relative_to(ROOT)}")


def _shards(args: argparse.Namespace, settings: Settings, workdir: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The registry-shards scenario, with the conditions it ran in (load average before and after)."""
    load0 = os.getloadavg()
    say(f"registry shards: {args.shard_rounds} rounds x 3 registries, {args.duration_s:g} s each, "
        f"{args.conc} clients over {args.shard_servers} servers")  # fmt: skip
    records = shards.run_shards(
        settings, secrets.token_urlsafe(32), workdir, rounds=args.shard_rounds, duration_s=args.duration_s,
        conc=args.conc, servers=args.shard_servers, say=say,
    )  # fmt: skip
    load1 = os.getloadavg()
    meta = {
        "written_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rounds": args.shard_rounds,
        "duration_s": args.duration_s, "cores": os.cpu_count(),
        "conditions": f"load average {load0[0]:.1f} before and {load1[0]:.1f} after on {os.cpu_count()} cores, "
        "nothing pinned, other work running on the machine",
    }  # fmt: skip
    return records, meta


def _migration(args: argparse.Namespace, settings: Settings) -> list[dict[str, Any]]:
    """Scenario 7, every variant (the twin's processes on the server core, the clients on the generator's)."""
    say(f"scenario 7: blue/green migration, {args.migration_clients} clients on 3 blue servers, "
        f"{len(migration.VARIANTS)} variants")  # fmt: skip
    return migration.run_migration(settings, args.migration_clients, SERVER_CORE, GEN_CORE, say)


def _only_migration(args: argparse.Namespace) -> int:
    """``--only migration``: run scenario 7 and put it into the last run's results and the page."""
    raise_nofile()
    records = _migration(args, Settings().with_overrides(BENCH_OVERRIDES))
    say("")
    say(report.table(migration.rows(records)))
    if args.quick or args.no_write:
        return 0
    if not RESULTS.exists():
        say(f"bench: no {RESULTS.relative_to(ROOT)} to add the migration to: run make bench for the whole page")
        return 0
    stored = json.loads(RESULTS.read_text())
    stored["migration"] = records
    stored.setdefault("args", {})["migration_clients"] = args.migration_clients
    stored.setdefault("stage_runs", {})["migration"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    RESULTS.write_text(json.dumps(stored, indent=1) + "\n")
    write_outputs(stored)
    return 0


def _growth(args: argparse.Namespace, settings: Settings, workdir: Path, nofile: int) -> dict[str, Any]:
    """The growth scenario's parts named by ``--growth-parts`` (stored as ``growth.run_parts`` returns them)."""
    parts = set(filter(None, args.growth_parts.split(",")))
    return growth.run_parts(
        settings, secrets.token_urlsafe(32), workdir, parts=parts, rounds=args.growth_rounds, quick=args.quick,
        nofile=nofile, fd_spare=FD_SPARE, server_core=SERVER_CORE, gen_core=GEN_CORE, say=say,
    )  # fmt: skip


def _only_growth(args: argparse.Namespace) -> int:
    """``--only growth``: run its parts and put them into the last run's results (other parts kept) and the page."""
    nofile = raise_nofile()
    loadgen.ensure_built([])
    with tempfile.TemporaryDirectory(prefix="stickyws-bench-") as tmp:
        new = _growth(args, Settings().with_overrides(BENCH_OVERRIDES), Path(tmp), nofile)
    say("")
    say(report.table(growth.rows(new)))
    if args.quick or args.no_write:
        return 0
    if not RESULTS.exists():
        say(f"bench: no {RESULTS.relative_to(ROOT)} to add the growth scenario to: run make bench for the whole page")
        return 0
    stored = json.loads(RESULTS.read_text())
    stored["growth"] = growth.merge(stored.get("growth"), new)
    stored.setdefault("args", {})["growth_rounds"] = args.growth_rounds
    stored.setdefault("stage_runs", {})["growth"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    RESULTS.write_text(json.dumps(stored, indent=1) + "\n")
    write_outputs(stored)
    return 0


def _only_memory_echo(args: argparse.Namespace) -> int:
    """``--only memory-echo``: the in-memory registry's row (``bench.variants.run_memory_echo``, ``--rounds``), put
    into the last run's traffic and the page."""
    raise_nofile()
    loadgen.ensure_built([])
    say(f"exactly-once echo, in-memory registry and Redis: {args.rounds} rounds, {args.duration_s:g} s each")
    with tempfile.TemporaryDirectory(prefix="stickyws-bench-") as tmp:
        records = variants.run_memory_echo(Settings().with_overrides(BENCH_OVERRIDES), Path(tmp), args.rounds,
                                           args.duration_s, args.conc, say)  # fmt: skip
    say("")
    say(report.table(report.memory_rows(records)))
    if args.quick or args.no_write or not RESULTS.exists():
        return 0
    stored = variants.merge_memory_echo(json.loads(RESULTS.read_text()), records)
    RESULTS.write_text(json.dumps(stored, indent=1) + "\n")
    write_outputs(stored)
    return 0


def _only_shards(args: argparse.Namespace) -> int:
    """``--only shards``: run that scenario and put it into the last run's results and the page."""
    raise_nofile()
    commands: list[str] = []
    loadgen.ensure_built(commands)
    settings = Settings().with_overrides(BENCH_OVERRIDES)
    with tempfile.TemporaryDirectory(prefix="stickyws-bench-") as tmp:
        records, meta = _shards(args, settings, Path(tmp))
    say("")
    say(report.table(shards.rows(records)))
    say("\n".join(shards.section(records, meta)))
    if args.quick or args.no_write:
        return 0
    stored = json.loads(RESULTS.read_text()) if RESULTS.exists() else None
    if stored is None:
        say(f"bench: no {RESULTS.relative_to(ROOT)} to add the shards to: run make bench for the whole page")
        return 0
    stored["shards"], stored["shards_meta"] = records, meta
    RESULTS.write_text(json.dumps(stored, indent=1) + "\n")
    write_outputs(stored)
    return 0


def _make_test(args: argparse.Namespace, started: float, say: Any) -> dict[str, Any] | None:
    if args.make_test == "skip":
        return None
    recorded = cost.recorded_make_test()
    mode = args.make_test
    if mode == "auto":
        left = args.budget_s - (time.monotonic() - started)
        expected = recorded["wall_s"] * 1.3 if recorded else report.MAKE_TEST_MAX_S
        mode = "run" if left > expected else "recorded"
        if mode == "recorded":
            say(f"make test: {left:.0f} s left of the {args.budget_s:g} s budget, expected ~{expected:.0f} s: "
                "reading the recorded value")  # fmt: skip
    if mode == "recorded":
        return recorded
    say("make test: running it once (wall time)")
    result = cost.run_make_test(timeout_s=900)
    say(f"  make test: {result['wall_s']:.0f} s, exit {result['exit_code']}: {result['summary']}")
    return result


def _median_line(records: list[dict[str, Any]], scenario: str, key: str, fmt: str) -> str:
    parts = []
    for peer in ("reference", "node"):
        with contextlib.suppress(ValueError):
            parts.append(f"{peer} {format(report.median_of(records, scenario, peer, key), fmt)}")
    return ", ".join(parts)


def _storm_line(storm_result: dict[str, Any]) -> str:
    """The storm's record in one line (floats to two places)."""
    return ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in storm_result.items())


def page(rs: list[report.Row], stored: dict[str, Any]) -> str:
    """BENCHMARKS.md: the results, what is missed and why, the method, the machine; the run's details."""
    args = argparse.Namespace(**stored["args"])
    traffic, idle, fan = stored["traffic"], stored["idle"], stored.get("fanout") or []
    storm_result, synth, test = stored["storm"], stored["synth"], stored["make_test"]
    judged = [r for r in rs if r.target == r.target]
    missed = report.missed_lines(rs)
    gen_cpu = "; ".join(f"{s} {_median_line(traffic, s, 'gen_cpu_cores', '.2f')} cores"
                        for s in ("handshake", "echo", "latency") if traffic)  # fmt: skip
    server_cpu = "; ".join(f"{s} {_median_line(traffic, s, 'server_cpu_cores', '.2f')}"
                           for s in ("handshake", "echo", "latency") if traffic)  # fmt: skip
    out = [
        "# Benchmarks: the reference server against the seed article's Node.js stack",
        "",
        f"Written by `make bench` on {stored['written_at']} ({stored['total_s']:.0f} s) from the run's stored "
        f"results, `{RESULTS.relative_to(ROOT)}` (`python -m bench.run --render-only` writes this page again from "
        "them). One shared, noisy 2-core machine: read the ratios, not the absolute values. The profiles and "
        "experiments behind these numbers, with their dates: [bench/findings.md](bench/findings.md).",
        "",
        "## Results",
        "",
        report.table(rs),
        "",
        f"![ratios against their targets](bench/{CHART.name})",
        "",
        f"{sum(r.passed for r in judged)} of {len(judged)} judged rows pass. Ratios are reference / peer (rows "
        "5-6: the socket.io peer; row 7: the same deploy with no hook; the in-memory registry's row: the same "
        "server on Redis); the memory, storm, migration and "
        '`make test` rows read measured / target ("of target"). '
        'Memory cells read `total (server RSS + registry in Redis)` per connection. "at least": see *Method*.',
        "",
        *(f"Note: {n}\n" for n in stored["notes"]),
        *(
            [
                "Note: this page was rendered from a run that predates the Node peer with a per-message commit and "
                "the `inbound_delivery=at_most_once` mode, judged against today's targets; `make bench` adds their "
                "rows.\n"
            ]
            if traffic and not any(r["peer"] == "node-commit" for r in traffic)
            else []
        ),
        "## What is missed, and why",
        "",
        *(missed or ["Every judged row meets its target."]),
        "",
        "## Method",
        "",
        "- Side by side: one invocation starts every peer on the same machine, one at a time, and alternates "
        "their order from round to round (A B, B A, ...). A cell is the median over the rounds; a ratio is the "
        "ratio of the medians.",
        f"- Rounds per peer: {args.rounds} of {args.duration_s:g} s in each of scenarios 1-2 ({args.conc} "
        f"connections); {args.memory_rounds} in scenario 3 (a fresh server and redis-server each); "
        f"{getattr(args, 'fanout_rounds', 0)} in scenarios 5-6; the storm once; {args.synth_rounds} alternated "
        "synths; `make test` once.",
        f"- Pinning: each server on core {SERVER_CORE} (`taskset -c {SERVER_CORE}`); the Go load generator "
        f"(`bench/loadgen/`, gorilla/websocket from Debian, Go 1.19 in GOPATH mode) and the shared redis-server "
        f"on core {GEN_CORE}. Everything on 127.0.0.1, free ports, every process stopped by its PID.",
        "- The load generator's own CPU: it reports it with every run (`gen ... cores` in the cells). Medians: "
        f"{gen_cpu}. Server CPU over the same windows: {server_cpu} (1.00 = the server's core saturated).",
        f'- "at least": where the generator\'s median CPU reaches {report.GEN_SATURATED_CORES:g} cores (in '
        "scenario 5: generator and publisher while a publication is in flight), the generator, whose core also "
        'runs Redis, may be what limited the rate: the figure is a lower bound and reads "at least N" (in '
        "scenario 5 both figures do when either generator is that busy). When only the peer's figure is a lower "
        "bound, the true ratio (reference / peer) can only be lower than shown, when only the reference's is, "
        "only higher; the row says so.",
        "- Scenario 1: 100 workers each loop connect (`?token=`, subprotocol `stickyws.v1`), wait for the "
        "`connected` frame, run the close handshake; every handshake is a distinct user.",
        '- Scenario 2: each connection sends `{"type":"send","id":N,"data":{...}}` and waits for its `ack` '
        "before the next (throughput). Latency: the same frames at a fixed "
        f"{args.latency_rate:g} msg/s in all, counted from the scheduled send time to the ack.",
        f"- Scenario 3: 100 connections as the baseline, then idle connections up to the baseline + "
        f"{args.stages.replace(',', ' / ')} (200 opening at a time), 1 s settle, then the server's VmRSS and "
        "Redis's `used_memory_dataset`; per connection = delta / connections. The reference's `max_connections` "
        f"is raised to {BENCH_OVERRIDES['max_connections']:,}.",
        "- Scenario 4 (`bench/storm.py`): 3 reference servers behind the twin's HAProxy, `StickyClient`s each "
        f"sending a numbered message every {storm.SEND_EVERY_S:g} s; one server is deregistered the way the twin "
        "does it (drain notice, `maint`, deregistration delay, SIGTERM). Settings: "
        + ", ".join(f"`{k}={v}`" for k, v in storm.STORM_OVERRIDES.items())
        + ". Lost = never-confirmed ids + ids handled twice + stored `lastClientId` mismatches + gaps in the "
        "`message` seq. The Node peer has no drain, resume or replay.",
        *fanout.method_lines(fan, getattr(args, "fanout_rounds", 0)),
        *([migration.method_line()] if stored.get("migration") else []),
        "- Synth: `make -s synth CDK_ARGS=--output <tmp>` against `bench/minimal-app` (one "
        "`aws_ecs_patterns.ApplicationLoadBalancedFargateService`, no cdk-nag) with `npx --no-install cdk synth "
        "--quiet --output <tmp>`: both cold processes, built-in validation on in both.",
        f"- `make test`: {test['source'] if test else 'not measured'}"
        + (f"; exit code {test['exit_code']}, `{test['summary']}`" if test else "")
        + ".",
        "",
        "## The Node peer (`bench/node-peer/`)",
        "",
        "`server.js` is the seed article's `WebSocketLoadBalancedServer` on `ws` "
        "8 + `ioredis`, pinned by `package-lock.json`: it verifies the token once (HS256, same secret and "
        "audience; the article verifies it twice), GETs and SETEXes the user's routing key (409 when another "
        "server holds it), keeps the "
        "article's metadata map, per-connection ping and heartbeat key, and answers the stickyws.v1 frames "
        "(`send` -> `message` + `ack`) with no dedup, no session state and no Redis per message. Started with "
        "`PEER_COMMIT=1` (`node-commit`) it commits each send before its ack as the reference does, one Lua call "
        "per message (dedup by id, next seq, a bounded outbox, route TTL) with ioredis auto-pipelining; the "
        "exactly-once rows compare with it, the `at_most_once` row with the plain peer (`bench/scenarios.py` "
        "`TRAFFIC_PLAN`, `bench/variants.py`). Per handshake the reference also writes a session record "
        "(resume token) in the same Lua round trip, handles takeover, and logs an audit line.",
        "",
    ]
    if fan:
        out += fanout.peer_section()
    out += ["## Machine and versions", "", *(f"- {k}: {v}" for k, v in stored["machine"].items()), ""]
    if idle:
        out += ["## Memory per idle connection by stage (medians, KB)", "",
                "| connections | reference server | reference registry | Node server | Node registry |",
                "|---|---|---|---|---|"]  # fmt: skip
        for n in sorted({int(r["connections"]) for r in idle}):
            cells = [
                f"{report.median_of(idle, 'idle', p, k, connections=n) / 1024:.2f}"
                for p in ("reference", "node") for k in ("server_bytes_per_conn", "redis_bytes_per_conn")
            ]  # fmt: skip
            out.append(f"| {n:,} | " + " | ".join(cells) + " |")
        out.append("")
    if storm_result is not None:
        out += ["## Reconnect storm, its record", "", _storm_line(storm_result), ""]
    if stored.get("migration"):
        out += ["## Blue/green migration, its records", "", *(f"- {_storm_line(r)}" for r in stored["migration"]), ""]
    if synth is not None:
        samples = ", ".join(f"{k}: {' / '.join(f'{v:.1f}' for v in vs)} s" for k, vs in synth["samples"].items())
        out += ["## Synth samples", "", samples, ""]
    out += shards.section(stored.get("shards"), stored.get("shards_meta"))
    out += growth.section(stored.get("growth"))
    out += [
        "## Commands",
        "",
        "```sh",
        "make bench                              # setup, Debian packages, pip install -e '.[bench]', then:",
        "python -m bench.run                     # --help: rounds, durations, --skip, --only shards, --make-test",
        "python -m bench.run --render-only       # this page, the chart and the findings' targets from the results",
        *stored["commands"],
        "```",
        "",
        "`make bench` installs `golang-go` and `golang-github-gorilla-websocket-dev` with apt-get when they are "
        "missing (root), builds the generator into `bench/.build/`, runs `npm ci` in `bench/node-peer/` and "
        "`bench/socketio-peer/`, and writes this page, `bench/ratios.png` and `bench/results/last-run.json`. "
        f"Stage times of this run: {', '.join(f'{k} {v:.0f} s' for k, v in stored['timings_s'].items())}.",
        "",
    ]
    return "\n".join(out)


if __name__ == "__main__":
    raise SystemExit(main())
