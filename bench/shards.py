"""Registry shards: the reference server on one redis-server, on a 1-shard and on a 3-shard Redis Cluster.

The same load in each registry: handshakes per second and exactly-once echo messages per second (the
generator's ``handshake`` and ``echo`` modes), ``servers`` reference servers per registry sharing it
(one generator process per server, hitting its port directly; the connections are split evenly, each
server's users are its own). Around every stage the CPU time of every process is read from
``/proc/<pid>/stat`` by PID: each server, each redis-server holding slots (per shard), and each
generator (its own ``getrusage``); ``/proc/stat`` gives the whole machine's busy time (other work
included) and ``INFO stats`` the commands each shard processed. So the table shows where the time
goes, and whether Redis or the servers are the limit.

A third stage takes the servers out: ``redis-benchmark`` sends the registry's own handshake script
straight to the shards (:func:`redis_bound`), so the load is on Redis and the gain of more shards shows
where Redis is the bottleneck (as far as the machine's cores allow).

Nothing is pinned: on a 2-core machine pinning three shards to one core would cap them at that core
and hide exactly the gain this scenario looks for. Rounds alternate the order of the registries
(A B C, C B A, ...); the report takes medians over rounds. Every process started here is stopped by
its PID; every generator run has a timeout.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from bench import generator as loadgen
from bench import peers
from bench.report import GEN_SATURATED_CORES, Row
from stickyws.localcluster import LocalCluster
from stickyws.localproc import RedisServer
from stickyws.registry.scripts import HANDSHAKE
from stickyws.server.auth import TokenVerifier
from stickyws.settings import Settings

#: The registries compared, in the order of the first round.
REGISTRIES = ("one redis-server", "cluster, 1 shard", "cluster, 3 shards")
SCENARIOS = ("handshake", "echo")
#: The stage that drives Redis alone: the registry's handshake script, sent by redis-benchmark.
REDIS_BOUND = "handshake script"
#: redis-benchmark load: requests, connections, pipeline depth, threads, users (keys are reused).
RB_REQUESTS, RB_CLIENTS, RB_PIPELINE, RB_THREADS, RB_USERS = 100_000, 60, 32, 2, 100_000
#: Tokens per server (users ``shard<i>-<n>``); handshakes cycle through them.
TOKENS_PER_SERVER = 2000
#: Seconds a generator run may take beyond its duration (dialing, closing).
GEN_SLACK_S = 60.0


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads), from ``/proc/<pid>/stat``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_s() -> float:
    """CPU seconds the whole machine has been busy (every process, every core), from ``/proc/stat``."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    busy = sum(fields[:8]) - idle  # user nice system idle iowait irq softirq steal
    return busy / os.sysconf("SC_CLK_TCK")


@dataclass
class Registry:
    """One registry under test: its URL and the redis-server processes that hold its slots."""

    name: str
    url: str
    #: ``(pid, port)`` of every redis-server that holds data (one per shard).
    shards: list[tuple[int, int]]

    def cpu_s(self) -> list[float]:
        """CPU seconds of each shard's process, in shard order."""
        return [proc_cpu_s(pid) for pid, _ in self.shards]

    def commands(self) -> list[int]:
        """``total_commands_processed`` of each shard."""
        out = []
        for _, port in self.shards:
            client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)
            try:
                out.append(int(client.info("stats")["total_commands_processed"]))
            finally:
                client.close()
        return out


@contextlib.contextmanager
def registries() -> Iterator[list[Registry]]:
    """One plain redis-server, a 1-shard cluster and a 3-shard cluster (no replicas), stopped by PID."""
    with (
        RedisServer() as single,
        LocalCluster(primaries=1, replicas=0) as one,
        LocalCluster(primaries=3, replicas=0) as three,
    ):
        assert single.pid is not None
        out = [Registry(REGISTRIES[0], single.url, [(single.pid, single.port)])]
        for name, cluster in ((REGISTRIES[1], one), (REGISTRIES[2], three)):
            shards = [(n.pid, n.port) for n in cluster.primary_nodes() if n.pid is not None]
            out.append(Registry(name, cluster.url, shards))
        yield out


def write_tokens(settings: Settings, secret: str, workdir: Path, servers: int) -> list[Path]:
    """One token file per server slot (users ``shard<i>-<n>``), so no user is on two servers at once."""
    verifier = TokenVerifier(secret, settings["jwt_audience"])
    out = []
    for i in range(servers):
        path = workdir / f"tokens-shard{i}.txt"
        path.write_text("\n".join(verifier.issue(f"shard{i}-{n}", 7200) for n in range(TOKENS_PER_SERVER)) + "\n")
        out.append(path)
    return out


def run_generators(
    mode: str, urls: list[str], tokens: list[Path], timeout_s: float, **flags: Any
) -> list[dict[str, Any]]:
    """One generator per URL, all at once (unpinned); their JSON reports, in URL order."""
    procs = [
        subprocess.Popen(loadgen.args(mode, url, tok, **flags), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, start_new_session=True)
        for url, tok in zip(urls, tokens, strict=True)
    ]  # fmt: skip
    reports: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    try:
        for proc in procs:
            try:
                out, err = proc.communicate(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise loadgen.LoadgenError(f"loadgen {mode} did not finish within {timeout_s:g} s") from None
            lines = [line for line in out.splitlines() if line.startswith("{")]
            if proc.returncode != 0 or not lines:
                raise loadgen.LoadgenError(f"loadgen {mode} exited {proc.returncode}: {err.strip()[-300:]}")
            reports.append(json.loads(lines[-1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
    return reports


def measure(registry: Registry, servers: list[peers.Server], tokens: list[Path], scenario: str, conc: int,
            duration_s: float) -> dict[str, Any]:  # fmt: skip
    """One stage: every server under its share of ``conc``; rates summed, CPU of every process over the stage."""
    share = max(1, conc // len(servers))
    redis0, cmds0 = registry.cpu_s(), registry.commands()
    server0 = [s.cpu_s() for s in servers]
    busy0, t0 = machine_busy_s(), time.monotonic()
    reports = run_generators(scenario, [s.url for s in servers], tokens, duration_s + GEN_SLACK_S, conc=share,
                             duration=duration_s)  # fmt: skip
    wall = time.monotonic() - t0
    machine_cores = (machine_busy_s() - busy0) / wall
    redis_cores = [(b - a) / wall for a, b in zip(redis0, registry.cpu_s(), strict=True)]
    commands = [(b - a) / wall for a, b in zip(cmds0, registry.commands(), strict=True)]
    server_cores = [(s.cpu_s() - a) / wall for s, a in zip(servers, server0, strict=True)]
    rate = sum(float(r["rate_per_s"]) for r in reports)
    return {
        "scenario": scenario, "registry": registry.name, "shards": len(registry.shards), "servers": len(servers),
        "conc": share * len(servers), "rate_per_s": rate, "errors": sum(int(r["errors"]) for r in reports),
        "last_error": next((r["last_error"] for r in reports if r.get("last_error")), ""),
        "server_cores": server_cores, "server_cpu_cores": sum(server_cores),
        "redis_cores": redis_cores, "redis_cpu_cores": sum(redis_cores), "redis_max_shard_cores": max(redis_cores),
        "redis_commands_per_s": commands,
        "redis_cpu_us_per_op": sum(redis_cores) / rate * 1e6 if rate else float("nan"),
        "gen_cpu_cores": sum(float(r["gen_cpu_cores"]) for r in reports), "machine_cpu_cores": machine_cores,
        "wall_s": wall,
        # handshake only: time from dial to the "connected" frame (median of the generators' p50, worst p99)
        "connect_p50_ms": statistics.median(float(r.get("connect_p50_ms", 0)) for r in reports),
        "connect_p99_ms": max(float(r.get("connect_p99_ms", 0)) for r in reports),
    }  # fmt: skip


def redis_bound(registry: Registry, timeout_s: float = 120.0) -> dict[str, Any]:
    """Drive Redis alone: ``redis-benchmark`` sends the registry's own handshake script (EVALSHA, random users
    of ``RB_USERS``, both keys in one slot) to every shard; no server in between, so Redis is the part under load.

    ``--cluster`` spreads the load over the shards (its ``{tag}`` becomes a tag of each node's slots);
    redis-benchmark refuses a 1-node cluster, so one shard gets a fixed tag instead (that node owns every slot).
    """
    binary = shutil.which("redis-benchmark")
    if binary is None:
        raise loadgen.LoadgenError("redis-benchmark not found: install the Debian package redis-tools")
    sha = ""
    for _, port in registry.shards:
        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)
        try:
            sha = str(client.script_load(HANDSHAKE.source))
        finally:
            client.close()
    cluster = len(registry.shards) > 1
    tag = "{tag}" if cluster else "{bench}"
    cmd = [binary, *(["--cluster"] if cluster else []), "-h", "127.0.0.1", "-p", str(registry.shards[0][1]),
           "-c", str(RB_CLIENTS), "-n", str(RB_REQUESTS), "-r", str(RB_USERS), "-P", str(RB_PIPELINE),
           "--threads", str(RB_THREADS), "-q",
           # KEYS route, session; ARGV server, routing ttl, reject, gone owner, session id, resume, session ttl,
           # replay after, outbox max messages, outbox max bytes (see scripts/handshake.lua).
           "EVALSHA", sha, "2", f"ws:{tag}:route:__rand_int__", f"ws:{tag}:session:__rand_int__", "bench", "3600",
           "0", "", "sid-__rand_int__", "0", "86400", "", "64", "65536"]  # fmt: skip
    redis0, cmds0 = registry.cpu_s(), registry.commands()
    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy0, t0 = machine_busy_s(), time.monotonic()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise loadgen.LoadgenError(f"redis-benchmark did not finish within {timeout_s:g} s") from None
    wall = time.monotonic() - t0
    machine_cores = (machine_busy_s() - busy0) / wall
    children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    found = re.findall(r"([0-9.]+) requests per second", done.stdout)
    if done.returncode != 0 or not found:
        raise loadgen.LoadgenError(f"redis-benchmark failed: {(done.stdout + done.stderr).strip()[-300:]}")
    redis_cores = [(b - a) / wall for a, b in zip(redis0, registry.cpu_s(), strict=True)]
    commands = [(b - a) / wall for a, b in zip(cmds0, registry.commands(), strict=True)]
    rate = float(found[-1])
    bench_cpu = (children1.ru_utime + children1.ru_stime - children0.ru_utime - children0.ru_stime) / wall
    return {
        "scenario": REDIS_BOUND, "registry": registry.name, "shards": len(registry.shards), "servers": 0,
        "conc": RB_CLIENTS, "rate_per_s": rate, "errors": 0, "last_error": "", "server_cores": [],
        "server_cpu_cores": 0.0, "redis_cores": redis_cores, "redis_cpu_cores": sum(redis_cores),
        "redis_max_shard_cores": max(redis_cores), "redis_commands_per_s": commands,
        "redis_cpu_us_per_op": sum(redis_cores) / rate * 1e6, "gen_cpu_cores": bench_cpu,
        "machine_cpu_cores": machine_cores, "wall_s": wall,
    }  # fmt: skip


def _order(round_no: int) -> list[int]:
    idx = list(range(len(REGISTRIES)))
    return idx if round_no % 2 == 0 else idx[::-1]


def run_shards(settings: Settings, secret: str, workdir: Path, *, rounds: int, duration_s: float, conc: int,
               servers: int, say: Callable[[str], None]) -> list[dict[str, Any]]:  # fmt: skip
    """The scenario: ``servers`` reference servers on each registry, ``rounds`` alternated rounds."""
    tokens = write_tokens(settings, secret, workdir, servers)
    records: list[dict[str, Any]] = []
    with registries() as regs:
        fleets: list[list[peers.Server]] = []
        try:
            for reg in regs:
                fleet: list[peers.Server] = []
                fleets.append(fleet)
                for i in range(servers):
                    fleet.append(peers.start("reference", settings=settings, secret=secret, redis_url=reg.url,
                                             core=None, workdir=workdir, tag=f"shards{len(fleets)}-{i}"))  # fmt: skip
            for fleet in fleets:  # warm-up: first connections, script loads, slot maps
                run_generators("handshake", [s.url for s in fleet], tokens, 1 + GEN_SLACK_S, conc=10, duration=1)
            for r in range(rounds):
                for i in _order(r):
                    for scenario in (*SCENARIOS, REDIS_BOUND):
                        if scenario == REDIS_BOUND:
                            rec = redis_bound(regs[i])
                        else:
                            rec = measure(regs[i], fleets[i], tokens, scenario, conc, duration_s)
                        rec["round"] = r
                        records.append(rec)
                        say(
                            f"  round {r + 1} {regs[i].name:<18} {scenario:<9} {rec['rate_per_s']:7.0f}/s  servers "
                            + " ".join(f"{c:.2f}" for c in rec["server_cores"])
                            + "  redis " + " ".join(f"{c:.2f}" for c in rec["redis_cores"])
                            + f"  generators {rec['gen_cpu_cores']:.2f}  machine {rec['machine_cpu_cores']:.2f} cores"
                            + (f"  connect p50 {rec['connect_p50_ms']:.1f} ms p99 {rec['connect_p99_ms']:.1f} ms"
                               if scenario == "handshake" else "")
                            + (f", {rec['errors']} errors: {rec['last_error'][:60]}" if rec["errors"] else "")
                        )  # fmt: skip
        finally:
            for fleet in fleets:
                for server in fleet:
                    server.stop()
    return records


def median(records: list[dict[str, Any]], scenario: str, registry: str, key: str) -> float:
    """Median of ``key`` over the rounds of ``scenario`` on ``registry``."""
    values = [float(r[key]) for r in records if r["scenario"] == scenario and r["registry"] == registry]
    if not values:
        raise ValueError(f"no {scenario} records on {registry}")
    return statistics.median(values)


def median_list(records: list[dict[str, Any]], scenario: str, registry: str, key: str) -> list[float]:
    """Element-wise median of the list ``key`` (one value per shard or server) over the rounds."""
    lists = [r[key] for r in records if r["scenario"] == scenario and r["registry"] == registry]
    return [statistics.median(col) for col in zip(*lists, strict=True)]


def rows(records: list[dict[str, Any]] | None) -> list[Row]:
    """Rows for the results table: 3 shards against 1 shard (information, no target)."""
    if not records:
        return []
    out = []
    servers = max(int(r["servers"]) for r in records)
    for scenario, label in (
        ("handshake", f"handshakes/s, {servers} servers"),
        ("echo", f"exactly-once echo messages/s, {servers} servers"),
        (REDIS_BOUND, "Redis alone: handshake scripts/s"),
    ):
        three, one = (median(records, scenario, REGISTRIES[i], "rate_per_s") for i in (2, 1))
        out.append(Row(f"registry shards: {label}", f"{three:,.0f} (3 shards)", f"{one:,.0f} (1 shard)",
                       three / one, float("nan"), True, "(info)",
                       note="3 shards / 1 shard; see *Registry shards*"))  # fmt: skip
    return out


def bottleneck(records: list[dict[str, Any]], scenario: str, registry: str, cores: int) -> str:
    """Which resource limited ``scenario`` on ``registry``, from the CPU medians."""
    shard = median(records, scenario, registry, "redis_max_shard_cores")
    srv, rds, gen = (median(records, scenario, registry, k) for k in ("server_cpu_cores", "redis_cpu_cores",
                                                                      "gen_cpu_cores"))  # fmt: skip
    machine = median(records, scenario, registry, "machine_cpu_cores")
    if shard >= GEN_SATURATED_CORES:  # a Redis shard is single-threaded, like the generator
        return f"Redis (busiest shard {shard:.2f} cores)"
    split = f"servers {srv:.2f}, Redis {rds:.2f}, load {gen:.2f}, other work {max(0.0, machine - srv - rds - gen):.2f}"
    if machine >= GEN_SATURATED_CORES * cores:
        return f"the machine's CPU ({machine:.2f} of {cores} cores busy: {split})"
    return f"waits, not CPU ({machine:.2f} of {cores} cores busy: {split})"


def section(records: list[dict[str, Any]] | None, meta: dict[str, Any] | None) -> list[str]:
    """The *Registry shards* section of BENCHMARKS.md (empty without records)."""
    if not records:
        return []
    meta = meta or {}
    ws = [r for r in records if r["scenario"] != REDIS_BOUND]
    servers, conc = (max(int(r[k]) for r in ws) for k in ("servers", "conc"))
    cores = int(meta.get("cores") or os.cpu_count() or 1)
    out = [
        "## Registry shards: one redis-server, a 1-shard and a 3-shard Redis Cluster",
        "",
        f"Measured {meta.get('written_at', '')} by `python -m bench.run --only shards` "
        f"({meta.get('rounds', '?')} rounds, the registries alternated; {meta.get('conditions', '')}). "
        f"`handshake` and `echo`: the generator's modes, {conc} connections (or handshake workers) in all for "
        f"{meta.get('duration_s', '?')} s, split over {servers} reference servers on the registry, one generator "
        f"per server on its own port. `{REDIS_BOUND}`: no server, `redis-benchmark` ({RB_CLIENTS} connections, "
        f"pipeline {RB_PIPELINE}, {RB_THREADS} threads, {RB_REQUESTS:,} calls over {RB_USERS:,} users) sends the "
        "registry's own handshake script to every shard, so Redis is the part under load. Cells are medians over "
        "the rounds; CPU in cores (1.00 = one core busy for the whole stage), read from `/proc/<pid>/stat` by PID "
        "for every server and every redis-server that holds slots, from `/proc/stat` for the whole machine. "
        "Redis commands count the calls inside scripts.",
        "",
        "| registry | stage | rate/s | servers (cores each) | Redis per shard (cores) | Redis commands/s per "
        "shard | Redis CPU per op | load generator (cores) | errors | what limited it |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for scenario in (*SCENARIOS, REDIS_BOUND):
        for reg in REGISTRIES:
            srv = median_list(records, scenario, reg, "server_cores")
            rds = median_list(records, scenario, reg, "redis_cores")
            cmd = median_list(records, scenario, reg, "redis_commands_per_s")
            errors = sum(int(r["errors"]) for r in records if r["scenario"] == scenario and r["registry"] == reg)
            out.append(
                f"| {reg} | {scenario} | {median(records, scenario, reg, 'rate_per_s'):,.0f} | "
                + (" + ".join(f"{c:.2f}" for c in srv) or "none") + " | "
                + " / ".join(f"{c:.2f}" for c in rds) + " | " + " / ".join(f"{c:,.0f}" for c in cmd) + " | "
                + f"{median(records, scenario, reg, 'redis_cpu_us_per_op'):.0f} us | "
                + f"{median(records, scenario, reg, 'gen_cpu_cores'):.2f} | {errors} | "
                + bottleneck(records, scenario, reg, cores) + " |"
            )  # fmt: skip
    out.append("")
    for scenario, label in (("handshake", "handshakes"), ("echo", "echo messages"), (REDIS_BOUND, REDIS_BOUND + "s")):
        one, three = (median(records, scenario, REGISTRIES[i], "rate_per_s") for i in (1, 2))
        us = median(records, scenario, REGISTRIES[1], "redis_cpu_us_per_op")
        line = (
            f"- {label}: 3 shards / 1 shard = {three / one:.2f}x measured. Redis CPU per operation on the 1-shard "
            f"cluster: {us:.0f} us, so one shard saturates at no less than {1e6 / us:,.0f}/s"
        )
        if scenario != REDIS_BOUND:
            server_us = median(records, scenario, REGISTRIES[1], "server_cpu_cores") / one * 1e6
            line += (
                f"; the servers spent {server_us:,.0f} us per operation, so it takes about {server_us / us:.0f} "
                "busy server cores to keep one shard busy"
            )
        out.append(
            line + " (arithmetic from the medians above, not measured; a shard's CPU per operation falls as it "
            "gets busier, so these are floors)."
        )
    cells = []
    for reg in REGISTRIES:
        rate, p50, p99 = (
            median(records, "handshake", reg, k) for k in ("rate_per_s", "connect_p50_ms", "connect_p99_ms")
        )
        cells.append(f"{reg} {p50:.0f} / {p99:.0f} ms of a {conc / rate * 1000:.0f} ms cycle")
    out.append(
        "- handshake connect time, dial to the `connected` frame, p50 / p99 (the cycle is workers / rate: "
        "connect, then the close handshake): " + "; ".join(cells) + "."
    )
    out.append("")
    return out
