"""Side-by-side runs of server variants: the same generator scenarios, alternated, medians and ratios.

    .venv/bin/python -m bench.variants --variants reference,reference-json [--scenarios echo] [--rounds 5]

A variant is a peer (``reference`` or ``node``) with settings overrides, a registry and extra
environment (:data:`VARIANTS`). Every variant runs at once on the server core (one under load at a
time); round ``r`` starts with variant ``r mod n`` (A B C, B C A, ...), so a noisy machine's drift hits
all alike. Printed: per scenario and variant the median rate (or p50/p99), the ratio to the first
variant, and the median server and generator CPU (a generator near one core means the figure is a
lower bound: "at least").
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import generator as loadgen
from bench import peers, scenarios
from bench.host import GEN_CORE, SERVER_CORE, raise_nofile, redis_on
from bench.peers import BENCH_DIR, Server
from bench.report import GEN_SATURATED_CORES
from stickyws.settings import Settings


@dataclass(frozen=True)
class Variant:
    """One server configuration under test."""

    name: str
    peer: str = "reference"
    overrides: dict[str, Any] = field(default_factory=dict)
    registry: str = "redis"
    extra_env: dict[str, str] = field(default_factory=dict)
    doc: str = ""
    #: The interpreter of the reference server (default: this one's); it needs the server's dependencies.
    python: str | None = None


_NO_ORJSON = {"PYTHONPATH": str(BENCH_DIR / "shadow" / "no-orjson")}
VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("reference", doc="stickyws serve, Redis registry, defaults (exactly_once)"),
        Variant("reference-amo", overrides={"inbound_delivery": "at_most_once"}, doc="inbound_delivery=at_most_once"),
        Variant("reference-json", extra_env=_NO_ORJSON, doc="as reference, standard json instead of orjson"),
        Variant(
            "reference-amo-json",
            overrides={"inbound_delivery": "at_most_once"},
            extra_env=_NO_ORJSON,
            doc="at_most_once with the standard json",
        ),
        Variant(
            "reference-pure",
            extra_env={"STICKYWS_PURE_PYTHON": "1"},
            doc="as reference, on the Python sources of the compiled modules (the compiled build side by side)",
        ),
        Variant("reference-memory", registry="memory", doc="in-memory registry (no Redis)"),
        Variant("reference-redis", doc="as reference: the in-memory registry's row (`bench.run --only memory-echo`)"),
        Variant(
            "baseline",
            extra_env={"PYTHONPATH": os.environ.get("BENCH_BASELINE_TREE", "")},
            doc="the reference server from the tree in $BENCH_BASELINE_TREE (`git archive` of another commit, "
            "unpacked): before and after in one run",
        ),
        Variant(
            "baseline-pure",
            extra_env={"PYTHONPATH": os.environ.get("BENCH_BASELINE_TREE", ""), "STICKYWS_PURE_PYTHON": "1"},
            doc="as baseline, on the Python sources of its compiled modules",
        ),
        Variant(
            "baseline-memory",
            registry="memory",
            extra_env={"PYTHONPATH": os.environ.get("BENCH_BASELINE_TREE", "")},
            doc="as baseline, on the in-memory registry",
        ),
        *(
            Variant(
                f"reference-py{v}",
                python=os.environ.get(f"BENCH_PYTHON_{v}"),
                doc=f"as reference, on CPython {v[0]}.{v[1:]} ($BENCH_PYTHON_{v}: an interpreter with the server's "
                "dependencies)",
            )
            for v in ("312", "313")
        ),
        Variant("proto-aiohttp", peer="proto-aiohttp", doc="the frames on aiohttp + uvloop alone, no registry"),
        Variant("proto-picows", peer="proto-picows", doc="the frames on picows + uvloop alone, no registry"),
        Variant("node", peer="node", doc="Node ws + ioredis, nothing persisted per message"),
        Variant(
            "node-commit",
            peer="node",
            extra_env={"PEER_COMMIT": "1"},
            doc="Node ws + ioredis, one Lua commit (dedup, seq, outbox) per message before the ack",
        ),
    )
}
SCENARIOS = ("handshake", "echo", "latency")


def _tokens(b: scenarios.Bench, v: Variant) -> Path:
    return b.tokens.get(v.peer, b.tokens["reference"])


def start(variant: Variant, b: scenarios.Bench, tag: str) -> Server:
    """Start ``variant`` pinned to the server core."""
    settings = b.settings.with_overrides(variant.overrides) if variant.overrides else b.settings
    return peers.start(variant.peer, settings=settings, secret=b.secret, redis_url=b.redis_url, core=b.server_core,
                       workdir=b.workdir, tag=tag, registry=variant.registry, extra_env=variant.extra_env,
                       python=variant.python)  # fmt: skip


def run(
    b: scenarios.Bench,
    variants: list[Variant],
    scenario_names: list[str],
    rounds: int,
    duration_s: float,
    conc: int,
    rate: float,
    say: Callable[[str], None],
    plan: dict[str, list[str]] | None = None,
) -> list[dict[str, Any]]:
    """Every variant x scenario x round, alternated; one record per generator run (``peer`` = variant name).

    ``plan`` (variant name -> scenarios) limits what a variant runs (default: ``scenario_names``)."""
    servers: dict[str, Server] = {}
    records: list[dict[str, Any]] = []
    timeout_s = duration_s + 60
    try:
        for v in variants:
            servers[v.name] = start(v, b, f"v{len(servers)}")
        for v in variants:  # warm-up
            loadgen.run("echo", servers[v.name].url, _tokens(b, v), core=b.gen_core, timeout_s=timeout_s,
                        conc=conc, duration=1)  # fmt: skip
        for r in range(rounds):
            order = variants[r % len(variants) :] + variants[: r % len(variants)]
            for v in order:
                server = servers[v.name]
                for scenario in (plan or {}).get(v.name, scenario_names):
                    flags: dict[str, Any] = {"conc": conc, "duration": duration_s}
                    if scenario == "latency":
                        flags["rate"] = rate
                    cpu0, t0 = server.cpu_s(), time.monotonic()
                    rec = loadgen.run(scenario, server.url, _tokens(b, v), core=b.gen_core, timeout_s=timeout_s,
                                      **flags)  # fmt: skip
                    rec["server_cpu_cores"] = (server.cpu_s() - cpu0) / (time.monotonic() - t0)
                    rec.update(scenario=scenario, peer=v.name, round=r)
                    records.append(rec)
                    say(f"  round {r + 1} {v.name:<20} {scenario:<9} {rec['rate_per_s']:9.0f}/s server "
                        f"{rec['server_cpu_cores']:.2f} cores, generator {rec['gen_cpu_cores']:.2f} cores"
                        + (f", p50 {rec['p50_ms']:.2f} ms p99 {rec['p99_ms']:.2f} ms" if scenario == "latency" else "")
                        + (f", {rec['errors']} errors" if rec.get("errors") else ""))  # fmt: skip
    finally:
        for server in servers.values():
            server.stop()
    return records


def run_traffic(b: scenarios.Bench, rounds: int, duration_s: float, conc: int, latency_rate: float,
                say: Callable[[str], None]) -> list[dict[str, Any]]:  # fmt: skip
    """Scenarios 1 and 2: per round and variant (:data:`bench.scenarios.TRAFFIC_PLAN`, alternated),
    handshakes, echo throughput, echo latency at a fixed rate. Records name the variant in ``peer``."""
    chosen = [VARIANTS[name] for name in scenarios.TRAFFIC_PLAN]
    return run(b, chosen, ["handshake", "echo", "latency"], rounds, duration_s, conc, latency_rate, say,
               plan=scenarios.TRAFFIC_PLAN)  # fmt: skip


#: The in-memory registry's row (:func:`bench.report.memory_rows`) as ``bench.run --only memory-echo`` measures it:
#: the server on the in-memory registry, and the same server on Redis (a full run pairs it with ``reference``).
MEMORY_ECHO = ("reference-memory", "reference-redis")


def run_memory_echo(
    settings: Settings, workdir: Path, rounds: int, duration_s: float, conc: int, say: Callable[[str], None]
) -> list[dict[str, Any]]:
    """The exactly-once echo on the in-memory registry and on a Redis registry (on the generator core), the same
    server pinned alike, alternated: one record per round and variant (:data:`MEMORY_ECHO`), each with the time
    of the run (``measured_at``, UTC)."""
    with redis_on(GEN_CORE) as redis_server:
        secret = secrets.token_urlsafe(32)
        tokens = scenarios.write_tokens(settings, secret, workdir, conc + 100)
        b = scenarios.Bench(settings, secret, redis_server.url, tokens, SERVER_CORE, GEN_CORE, workdir)
        records = run(b, [VARIANTS[n] for n in MEMORY_ECHO], ["echo"], rounds, duration_s, conc, 0.0, say)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return [{**r, "measured_at": when} for r in records]


def merge_memory_echo(stored: dict[str, Any], records: list[dict[str, Any]]) -> dict[str, Any]:
    """``stored`` (a run's results) with ``records`` (:func:`run_memory_echo`) in place of its earlier ones."""
    kept = [r for r in stored.get("traffic", []) if r["peer"] not in MEMORY_ECHO]
    return {**stored, "traffic": kept + records}


def run_idle(
    b: scenarios.Bench, variants: list[Variant], rounds: int, conns: int, say: Callable[[str], None]
) -> list[dict[str, Any]]:
    """Memory per idle connection: per round and variant a fresh redis-server and server, ``conns``
    connections over a baseline of :data:`~bench.scenarios.IDLE_BASELINE`; server RSS and Redis
    ``used_memory_dataset`` deltas per connection (``scenario`` ``idle``, ``rate_per_s`` = KB per connection)."""
    import os

    import redis

    from stickyws.localproc import RedisServer

    records: list[dict[str, Any]] = []
    stages = [scenarios.IDLE_BASELINE, scenarios.IDLE_BASELINE + conns]
    for r in range(rounds):
        for v in variants[r % len(variants) :] + variants[: r % len(variants)]:
            with RedisServer() as registry:
                if b.gen_core is not None and registry.pid is not None:
                    os.sched_setaffinity(registry.pid, {b.gen_core})
                client = redis.Redis.from_url(registry.url)
                bb = scenarios.Bench(b.settings, b.secret, registry.url, b.tokens, b.server_core, b.gen_core, b.workdir)
                server = start(v, bb, f"idle{r}")
                session = loadgen.IdleSession(server.url, _tokens(b, v), stages, core=b.gen_core, conc=200)
                try:
                    readings = []
                    for _ in stages:
                        rep = session.report()
                        time.sleep(scenarios.IDLE_SETTLE_S)
                        used = int(client.info("memory")["used_memory_dataset"])
                        readings.append((server.rss_bytes(), used, int(rep["open"]), float(rep["gen_cpu_s"])))
                        session.proceed()
                    session.finish(timeout_s=60)
                finally:
                    session.kill()
                    server.stop()
                    client.close()
            (rss0, used0, open0, _), (rss1, used1, open1, gen_s) = readings
            n = open1 - open0
            rec = {"scenario": "idle", "peer": v.name, "round": r, "open": n, "server_kb": (rss1 - rss0) / n / 1024,
                   "registry_kb": (used1 - used0) / n / 1024, "gen_cpu_cores": 0.0, "server_cpu_cores": 0.0,
                   "gen_cpu_s": gen_s}  # fmt: skip
            rec["rate_per_s"] = rec["server_kb"] + rec["registry_kb"]
            records.append(rec)
            say(f"  round {r + 1} {v.name:<20} {n} idle: {rec['rate_per_s']:.2f} KB/conn (server "
                f"{rec['server_kb']:.2f} + registry {rec['registry_kb']:.2f})")  # fmt: skip
    return records


def med(records: list[dict[str, Any]], scenario: str, name: str, key: str) -> float:
    """Median of ``key`` over one variant's records of ``scenario``."""
    values = [float(r[key]) for r in records if r["scenario"] == scenario and r["peer"] == name]
    if not values:
        raise ValueError(f"no {scenario}/{name} records")
    return statistics.median(values)


def summary(records: list[dict[str, Any]], names: list[str]) -> list[str]:
    """Lines: per scenario and variant the medians and the ratio to the first variant."""
    out = []
    for scenario in dict.fromkeys(r["scenario"] for r in records):
        base = med(records, scenario, names[0], "rate_per_s")
        if scenario == "idle":
            for name in names:
                kb, srv, reg = (med(records, "idle", name, k) for k in ("rate_per_s", "server_kb", "registry_kb"))
                out.append(f"idle      {name:<20} {kb:.2f} KB per idle connection (server {srv:.2f} + registry "
                           f"{reg:.2f}; {kb / base:.2f}x {names[0]})")  # fmt: skip
            continue
        for name in names:
            if not any(r["scenario"] == scenario and r["peer"] == name for r in records):
                continue
            rate = med(records, scenario, name, "rate_per_s")
            gen = med(records, scenario, name, "gen_cpu_cores")
            line = (f"{scenario:<9} {name:<20} {'>= ' if gen >= GEN_SATURATED_CORES else ''}{rate:,.0f}/s "
                    f"({rate / base:.2f}x {names[0]}), server {med(records, scenario, name, 'server_cpu_cores'):.2f} "
                    f"cores, generator {gen:.2f} cores")  # fmt: skip
            if scenario == "latency":
                p50, p99 = (med(records, scenario, name, k) for k in ("p50_ms", "p99_ms"))
                line += f", p50 {p50:.2f} ms p99 {p99:.2f} ms"
            out.append(line)
    return out


def saturated(records: list[dict[str, Any]], scenario: str, name: str) -> bool:
    """Whether the generator ran near a full core for ``name`` (its rate is then a lower bound)."""
    return med(records, scenario, name, "gen_cpu_cores") >= GEN_SATURATED_CORES


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.variants", description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", default="reference,reference-json", help=f"comma-separated, of {', '.join(VARIANTS)}")
    p.add_argument("--scenarios", default="echo", help=f"comma-separated, of {', '.join(SCENARIOS)}")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--duration-s", type=float, default=3.0)
    p.add_argument("--conc", type=int, default=100)
    p.add_argument("--rate", type=float, default=1000.0, help="total msg/s of the latency scenario")
    p.add_argument("--idle", type=int, default=0, help="also measure memory per idle connection at this count")
    p.add_argument(
        "--tree", type=Path, help="variants reference-tree, reference-amo-tree: the server from this copy of the tree"
    )
    args = p.parse_args(argv)
    if args.tree is not None:  # the same server from another copy of the tree, in both delivery modes
        tree_env = {"PYTHONPATH": str(args.tree.resolve())}
        VARIANTS["reference-tree"] = Variant("reference-tree", extra_env=tree_env, doc=f"reference from {args.tree}")
        VARIANTS["reference-amo-tree"] = Variant("reference-amo-tree", overrides={"inbound_delivery": "at_most_once"},
                                                 extra_env=tree_env, doc=f"reference-amo from {args.tree}")  # fmt: skip
    chosen = [VARIANTS[n] for n in args.variants.split(",")]
    names = [v.name for v in chosen]
    raise_nofile()
    loadgen.ensure_built([])
    settings = Settings().with_overrides({"max_connections": 30_000})
    with tempfile.TemporaryDirectory(prefix="stickyws-variants-") as tmp, redis_on(GEN_CORE) as redis_server:
        workdir = Path(tmp)
        secret = secrets.token_urlsafe(32)
        tokens = scenarios.write_tokens(settings, secret, workdir, max(args.conc, args.idle) + 2000)
        b = scenarios.Bench(settings, secret, redis_server.url, tokens, SERVER_CORE, GEN_CORE, workdir)
        say = lambda line: print(line, flush=True)  # noqa: E731
        records = []
        if args.scenarios:
            records += run(
                b, chosen, args.scenarios.split(","), args.rounds, args.duration_s, args.conc, args.rate, say
            )
        if args.idle:
            records += run_idle(b, chosen, args.rounds, args.idle, say)
    print()
    for line in summary(records, names):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
