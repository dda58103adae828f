"""The registry's commit script on a local Redis Cluster: our lanes against valkey-glide and redis-py, and WAIT.

    python -m bench.cluster_commit [--part clients|wait|both] [--rounds 3] [--seconds 3] [--concurrency 100]
                                   [--wait-callers 100,1] [--only lanes|glide|redis-py] [--out PATH]

Both parts send the registry's real commit script (``COMMIT`` of :mod:`stickyws.registry.scripts`,
one payload per call, topic unchanged) with ``EVALSHA`` from ``--concurrency`` coroutines in a closed loop,
each coroutine committing to its own user's session (one hash-tag slot per user, users spread over all
slots; the sessions are created and their outboxes filled to the limit before the first round, so every
call takes the same steady-state path: HGET, HMGET, EXPIRE, HSET of the message, HSTRLEN + HDEL of the
oldest, HSET of the counters, GET + EXPIRE of the route key).

* ``clients``: a :class:`~stickyws.localcluster.LocalCluster` of 3 primaries and no replicas; per round
  each client in turn (the order reversed every other round) is opened, warmed up for ``--warmup``
  seconds and measured for ``--seconds``:

  - ``lanes``: :class:`~stickyws.registry.cluster_lanes.ClusterLanes` (one auto-pipelined hiredis
    connection per primary, the slot map from redis-py's ``RedisCluster``), as the registry runs it;
  - ``glide``: valkey-glide's ``GlideClusterClient.invoke_script`` (``request_timeout`` 2000 ms, like
    the lanes' reply timeout; everything else default);
  - ``redis-py``: ``redis.asyncio.cluster.RedisCluster.register_script`` (defaults, hiredis parser).

* ``wait``: a LocalCluster of 3 primaries with 1 replica each; the lanes only, each commit followed by
  ``lane.wait_replicated(1, 1000)`` as the registry's ``commit`` does with ``ack_wait_replicas=1``
  (``wait``), or not (``nowait``), alternated, with each number of callers of ``--wait-callers`` (100: the
  load; 1: one call at a time, the latency of the WAIT itself).

Per measured window: calls/s, latency per call (p50/p99), the client process's CPU (``time.process_time``,
every thread: glide's Rust core included) per call, each node's CPU (``INFO cpu`` used_cpu_sys +
used_cpu_user deltas) per call, the ``EVALSHA`` and ``WAIT`` calls each node counted (``INFO
commandstats``), and the whole machine's busy time from ``/proc/stat`` (what other work took is the rest).
The report gives medians over rounds and ratios against the first variant (of the medians, and the
median of the per-round ratios). Results are printed and written as JSON (``--out``). Every
redis-server is started and stopped by the LocalCluster (by PID).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import redis

from stickyws import keys
from stickyws.localcluster import LocalCluster
from stickyws.registry.cluster_lanes import ClusterLanes
from stickyws.registry.redis_lane import RedisLane
from stickyws.registry.scripts import COMMIT

SERVER_ID = "bench-server"
SESSION_TTL_S = 600
ROUTING_TTL_S = 600
#: Outbox limit of the benchmark's sessions: small, so every session is at it (trimming) before round 1.
OUTBOX_MAX_MESSAGES = 64
OUTBOX_MAX_BYTES = 1024 * 1024
PAYLOAD = json.dumps([json.dumps({"type": "echo", "data": "hello from the benchmark 0123456789"})])
REPLY_TIMEOUT_S = 2.0
WAIT_REPLICAS = 1
WAIT_TIMEOUT_MS = 1000


@dataclass
class Session:
    user: str
    keys: list[str]
    sid: str
    last: int = 0
    seq: int = 0

    def args(self) -> list[str | int]:
        """The commit's ARGV as :meth:`RedisRegistry.commit` builds it, for the next message id."""
        return [
            self.sid, SESSION_TTL_S, SERVER_ID, ROUTING_TTL_S, OUTBOX_MAX_MESSAGES, OUTBOX_MAX_BYTES,
            self.last + 1, "", "", PAYLOAD, self.last, self.seq, "", "",
        ]  # fmt: skip

    def take(self, reply: Any) -> None:
        if int(reply[0]) != 0:
            raise RuntimeError(f"commit of {self.user} answered {reply!r}")
        self.last, self.seq = int(reply[2]), int(reply[3])


class Client:
    """One way of sending the commit script to the cluster."""

    name = ""
    version = ""

    async def open(self, cluster: LocalCluster) -> None: ...
    async def close(self) -> None: ...
    async def commit(self, session: Session, args: list[str | int]) -> Any: ...


class Lanes(Client):
    name = "lanes"

    def __init__(self, name: str = "lanes", *, wait: bool = False) -> None:
        self.name, self.wait = name, wait
        self.acked_short = 0  # WAITs that confirmed fewer replicas than asked

    async def open(self, cluster: LocalCluster) -> None:
        from importlib.metadata import version

        from redis.asyncio.cluster import RedisCluster

        self.version = f"stickyws lanes (hiredis {version('hiredis')})"
        self.map = RedisCluster.from_url(cluster.url)
        await self.map.initialize()
        self.lanes = ClusterLanes(self.map, RedisLane(cluster.url, reply_timeout_s=REPLY_TIMEOUT_S))
        self.script = COMMIT

    async def close(self) -> None:
        await self.lanes.close()
        await self.map.aclose()

    async def commit(self, session: Session, args: list[str | int]) -> Any:
        reply, lane = await self.lanes.evalsha_with_lane(self.script, session.keys, args)
        if self.wait and reply[0] == 0:
            acked = await lane.wait_replicated(WAIT_REPLICAS, WAIT_TIMEOUT_MS)
            self.acked_short += acked < WAIT_REPLICAS
        return reply


class Glide(Client):
    name = "glide"

    async def open(self, cluster: LocalCluster) -> None:
        from importlib.metadata import version

        from glide import GlideClusterClient, GlideClusterClientConfiguration, NodeAddress, Script

        self.version = f"valkey-glide {version('valkey-glide')}"
        port = cluster.nodes[0].port
        config = GlideClusterClientConfiguration(
            [NodeAddress("127.0.0.1", port)], request_timeout=int(REPLY_TIMEOUT_S * 1000)
        )
        self.c = await GlideClusterClient.create(config)
        self.script = Script(COMMIT.source.decode())

    async def close(self) -> None:
        await self.c.close()

    async def commit(self, session: Session, args: list[str | int]) -> Any:
        return await self.c.invoke_script(self.script, keys=session.keys, args=[str(a) for a in args])


class RedisPy(Client):
    name = "redis-py"

    async def open(self, cluster: LocalCluster) -> None:
        from redis.asyncio.cluster import RedisCluster

        self.version = f"redis-py {redis.__version__}"
        self.c = RedisCluster.from_url(cluster.url)
        await self.c.initialize()
        self.script = self.c.register_script(COMMIT.source)

    async def close(self) -> None:
        await self.c.aclose()

    async def commit(self, session: Session, args: list[str | int]) -> Any:
        return await self.script(keys=session.keys, args=args)


@dataclass
class Window:
    """One client's measured window in one round."""

    variant: str
    callers: int
    round: int
    seconds: float
    calls: int
    errors: dict[str, int]
    calls_per_s: float
    p50_ms: float
    p99_ms: float
    client_cpu_us_per_call: float
    client_cores: float
    redis_cpu_us_per_call: float  # every node together
    redis_cpu_us_per_call_by_node: dict[str, float]
    redis_cores: float
    primary_cpu_us_per_call: float
    replica_cpu_us_per_call: float
    machine_busy_cores: float
    other_work_cores: float  # machine busy minus this client and the redis-servers
    evalsha_calls: int
    wait_calls: int
    waits_short: int = 0


def machine_busy_s() -> float:
    """Seconds of CPU the whole machine has been busy since boot (``/proc/stat``, all cores)."""
    with open("/proc/stat", encoding="ascii") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class Nodes:
    """``INFO cpu`` and ``INFO commandstats`` of every node, over one sync connection each."""

    def __init__(self, cluster: LocalCluster) -> None:
        primaries = {n.port for n in cluster.primary_nodes()}
        self.nodes = [(n.port, n.port in primaries, redis.Redis(host="127.0.0.1", port=n.port)) for n in cluster.nodes]

    def snapshot(self) -> dict[int, tuple[float, int, int]]:
        out = {}
        for port, _, c in self.nodes:
            info: Any = c.info("cpu")
            stats: Any = c.info("commandstats")
            cpu = float(info["used_cpu_sys"]) + float(info["used_cpu_user"])
            evalsha = int(stats.get("cmdstat_evalsha", {}).get("calls", 0))
            wait = int(stats.get("cmdstat_wait", {}).get("calls", 0))
            out[port] = (cpu, evalsha, wait)
        return out

    def primary(self, port: int) -> bool:
        return next(p for q, p, _ in self.nodes if q == port)

    def close(self) -> None:
        for _, _, c in self.nodes:
            c.close()


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


async def measure(
    client: Client, sessions: list[Session], nodes: Nodes, warmup_s: float, seconds: float, rnd: int
) -> Window:
    latencies: list[float] = []
    errors: dict[str, int] = {}
    recording = False
    stop = False
    clock = time.perf_counter

    async def worker(session: Session) -> None:
        while not stop:
            started = clock()
            try:
                reply = await client.commit(session, session.args())
                session.take(reply)
            except Exception as exc:  # counted: the finding is how many and which
                name = type(exc).__name__
                errors[name] = errors.get(name, 0) + 1
                await asyncio.sleep(0.01)
                continue
            if recording:
                latencies.append(clock() - started)

    tasks = [asyncio.create_task(worker(s)) for s in sessions]
    await asyncio.sleep(warmup_s)
    before = nodes.snapshot()
    busy0, cpu0, t0 = machine_busy_s(), time.process_time(), time.monotonic()
    recording = True
    errors.clear()
    await asyncio.sleep(seconds)
    recording = False
    busy1, cpu1, t1 = machine_busy_s(), time.process_time(), time.monotonic()
    calls = len(latencies)
    after = nodes.snapshot()
    stop = True
    await asyncio.gather(*tasks)
    elapsed = t1 - t0
    latencies.sort()
    by_node = {port: after[port][0] - before[port][0] for port in after}
    redis_cpu = sum(by_node.values())
    replica_cpu = sum(v for port, v in by_node.items() if not nodes.primary(port))
    per_call = 1e6 / max(1, calls)
    return Window(
        variant=client.name,
        callers=len(sessions),
        round=rnd,
        seconds=round(elapsed, 3),
        calls=calls,
        errors=dict(errors),
        calls_per_s=round(calls / elapsed, 1),
        p50_ms=round(percentile(latencies, 0.50) * 1000, 3),
        p99_ms=round(percentile(latencies, 0.99) * 1000, 3),
        client_cpu_us_per_call=round((cpu1 - cpu0) * per_call, 1),
        client_cores=round((cpu1 - cpu0) / elapsed, 3),
        redis_cpu_us_per_call=round(redis_cpu * per_call, 1),
        redis_cpu_us_per_call_by_node={
            f"{port}{'' if nodes.primary(port) else ' (replica)'}": round(v * per_call, 1)
            for port, v in by_node.items()
        },
        redis_cores=round(redis_cpu / elapsed, 3),
        primary_cpu_us_per_call=round((redis_cpu - replica_cpu) * per_call, 1),
        replica_cpu_us_per_call=round(replica_cpu * per_call, 1),
        machine_busy_cores=round((busy1 - busy0) / elapsed, 3),
        other_work_cores=round(max(0.0, (busy1 - busy0) - (cpu1 - cpu0) - redis_cpu) / elapsed, 3),
        evalsha_calls=sum(after[p][1] - before[p][1] for p in after),
        wait_calls=sum(after[p][2] - before[p][2] for p in after),
    )


async def prepare(cluster: LocalCluster, users: int) -> list[Session]:
    """Create ``users`` sessions and fill their outboxes to the limit, over the lanes."""
    sessions = [
        Session(user, list((keys.session_key(user), keys.user_key(user))), f"sid-{user}")
        for user in (f"bench-user-{i}" for i in range(users))
    ]
    lanes = Lanes()
    await lanes.open(cluster)
    try:
        for s in sessions:
            await lanes.map.set(s.keys[1], SERVER_ID)
        script = COMMIT

        async def fill(s: Session) -> None:
            args = s.args()
            args[12], args[13] = "[]", "[]"  # the hash does not exist yet: create it from this (empty) mirror
            s.take(await lanes.lanes.evalsha(script, s.keys, args))
            for _ in range(OUTBOX_MAX_MESSAGES + 8):
                s.take(await lanes.lanes.evalsha(script, s.keys, s.args()))

        await asyncio.gather(*(fill(s) for s in sessions))
    finally:
        await lanes.close()
    return sessions


async def run_part(
    part: str, variants: list[str], callers: list[int], rounds: int, seconds: float, warmup_s: float
) -> dict[str, Any]:
    """Every variant with every number of callers, ``rounds`` times, on one fresh cluster."""
    replicas = 1 if part == "wait" else 0
    windows: list[Window] = []
    versions: dict[str, str] = {}
    with LocalCluster(primaries=3, replicas=replicas) as cluster:
        server = redis.Redis(host="127.0.0.1", port=cluster.nodes[0].port)
        server_version = server.info("server")["redis_version"]
        server.close()
        sessions = await prepare(cluster, max(callers))
        nodes = Nodes(cluster)
        try:
            for rnd in range(rounds):
                for n in callers:
                    for name in variants if rnd % 2 == 0 else variants[::-1]:
                        client = make_client(name)
                        await client.open(cluster)
                        try:
                            window = await measure(client, sessions[:n], nodes, warmup_s, seconds, rnd)
                        finally:
                            await client.close()
                        if isinstance(client, Lanes):
                            window.waits_short = client.acked_short
                        versions[name] = client.version
                        windows.append(window)
                        print(json.dumps(asdict(window)), flush=True)
        finally:
            nodes.close()
    return {
        "part": part,
        "cluster": f"redis-server {server_version}, 3 primaries, {replicas} replica(s) each, loopback",
        "seconds": seconds,
        "warmup_s": warmup_s,
        "versions": versions,
        "windows": [asdict(w) for w in windows],
        "summary": {str(n): summarize([w for w in windows if w.callers == n], variants) for n in callers},
    }


def make_client(name: str) -> Client:
    if name in ("lanes", "wait", "nowait"):
        return Lanes(name, wait=name == "wait")
    return {"glide": Glide, "redis-py": RedisPy}[name]()


METRICS = (
    "calls_per_s",
    "p50_ms",
    "p99_ms",
    "client_cpu_us_per_call",
    "client_cores",
    "redis_cpu_us_per_call",
    "primary_cpu_us_per_call",
    "replica_cpu_us_per_call",
    "redis_cores",
    "machine_busy_cores",
    "other_work_cores",
)


def summarize(windows: list[Window], variants: list[str]) -> dict[str, Any]:
    """Per variant: the median over rounds of every metric with its range, the ratio of that median to the
    first variant's, and the median of the per-round ratios (each round's windows against the first
    variant's window of the same round)."""
    out: dict[str, Any] = {}
    base_by_round = {w.round: w for w in windows if w.variant == variants[0]}
    for name in variants:
        mine = [w for w in windows if w.variant == name]
        row: dict[str, Any] = {}
        for metric in METRICS:
            values = [getattr(w, metric) for w in mine]
            row[metric] = {"median": round(statistics.median(values), 3), "min": min(values), "max": max(values)}
            paired = [
                getattr(w, metric) / getattr(base_by_round[w.round], metric)
                for w in mine
                if getattr(base_by_round[w.round], metric)
            ]
            row[metric]["paired_ratio"] = round(statistics.median(paired), 3) if paired else None
        row["evalsha_per_wait"] = round(
            statistics.median(w.evalsha_calls / w.wait_calls for w in mine) if all(w.wait_calls for w in mine) else 0,
            2,
        )
        row["errors"] = sum(sum(w.errors.values()) for w in mine)
        row["waits_short"] = sum(w.waits_short for w in mine)
        out[name] = row
    base = out[variants[0]]
    for name in variants:
        for metric in METRICS:
            b = base[metric]["median"]
            out[name][metric]["ratio"] = round(out[name][metric]["median"] / b, 3) if b else None
    return out


def print_table(result: dict[str, Any]) -> None:
    for callers, summary in result["summary"].items():
        names = list(summary)
        print(f"\n{result['part']}: {result['cluster']}, {callers} callers, {result['seconds']} s windows")
        print("median (range) ratio-of-medians / median-of-per-round-ratios")
        print("| metric | " + " | ".join(names) + " |")
        for metric in METRICS:
            cells = []
            for name in names:
                m = summary[name][metric]
                if m["ratio"] is None:
                    cells.append("-")
                    continue
                cells.append(
                    f"{m['median']:g} ({m['min']:g}-{m['max']:g}) {m['ratio']:.2f}x / {m['paired_ratio']:.2f}x"
                )
            print(f"| {metric} | " + " | ".join(cells) + " |")
        print("| errors | " + " | ".join(str(summary[n]["errors"]) for n in names) + " |")
        print("| EVALSHA per WAIT | " + " | ".join(str(summary[n]["evalsha_per_wait"]) for n in names) + " |")
        print("| WAITs short of 1 replica | " + " | ".join(str(summary[n]["waits_short"]) for n in names) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").strip().split("\n")[0])
    parser.add_argument("--part", choices=["clients", "wait", "both"], default="both")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0, help="measured window per client and round")
    parser.add_argument("--warmup", type=float, default=1.0, help="load before each window, not measured")
    parser.add_argument("--concurrency", type=int, default=100, help="callers of the clients part (a session each)")
    parser.add_argument(
        "--wait-callers", default="100,1", help="comma-separated numbers of callers of the wait part (a session each)"
    )
    parser.add_argument("--only", choices=["lanes", "glide", "redis-py"], action="append", help="clients part")
    parser.add_argument("--out", default="bench/results/cluster-commit.json")
    args = parser.parse_args()
    wait_callers = [int(n) for n in args.wait_callers.split(",")]
    results = []
    if args.part in ("clients", "both"):
        variants = [v for v in ("lanes", "glide", "redis-py") if not args.only or v in args.only]
        result = asyncio.run(run_part("clients", variants, [args.concurrency], args.rounds, args.seconds, args.warmup))
        results.append(result)
        print_table(result)
    if args.part in ("wait", "both"):
        result = asyncio.run(run_part("wait", ["nowait", "wait"], wait_callers, args.rounds, args.seconds, args.warmup))
        results.append(result)
        print_table(result)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
