"""Cluster-aware async Redis clients on a real local Redis Cluster: throughput, redirects, failover, sharded pub/sub.

    python -m bench.cluster_clients [--seconds 3] [--concurrency 32] [--out bench/results/cluster-clients.json]

For each client (redis-py's ``redis.asyncio.cluster.RedisCluster``, coredis' ``RedisCluster``,
valkey-glide's ``GlideClusterClient``), on a fresh :class:`stickyws.localcluster.LocalCluster` of
3 primaries + 3 replicas on loopback:

1. EVALSHA of a one-slot script (INCR + EXPIRE of ``{u:N}:n``), ``--concurrency`` tasks, per second;
2. pipelined commands per second (non-transactional pipelines of 64 SETs spread over all slots);
3. MOVED (a slot moved to another primary under the client) and ASK (a slot half-migrated: the key is
   already on the target) -- does the next read return the value?
4. kill -9 of a primary under steady EVALSHA load: errors seen (by type), time from the kill to the
   last error, to the first success on the dead primary's slots, and operations completed;
5. sharded pub/sub: SSUBSCRIBE to one channel per shard, SPUBLISH 100 messages to each, count received.

Every client runs with its defaults apart from the addresses. Results are printed and written as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from stickyws.localcluster import LocalCluster

SCRIPT = "local n = redis.call('INCR', KEYS[1]) redis.call('EXPIRE', KEYS[1], 600) return n"
USERS = 1000
PIPELINE_DEPTH = 64


@dataclass
class Result:
    client: str
    version: str
    evalsha_per_s: float = 0.0
    pipelined_cmds_per_s: float = 0.0
    moved_followed: bool | str = False
    ask_followed: bool | str = False
    failover: dict[str, Any] = field(default_factory=dict)
    sharded_pubsub: str = ""


class Adapter:
    """The few operations the benchmark needs, per client."""

    name = ""
    version = ""

    async def open(self, port: int) -> None: ...
    async def close(self) -> None: ...
    async def evalsha(self, key: str) -> Any: ...
    async def pipeline_sets(self, keys: list[str]) -> Any: ...
    async def get(self, key: str) -> Any: ...
    async def set(self, key: str, value: str) -> Any: ...
    async def sharded_pubsub(self, channels: list[str], messages: int, port: int) -> str: ...


class RedisPy(Adapter):
    name = "redis-py asyncio RedisCluster"

    async def open(self, port: int) -> None:
        import redis
        from redis.asyncio.cluster import RedisCluster

        self.version = redis.__version__
        self.c = RedisCluster(host="127.0.0.1", port=port)
        await self.c.initialize()
        self.script = self.c.register_script(SCRIPT)

    async def close(self) -> None:
        await self.c.aclose()

    async def evalsha(self, key: str) -> Any:
        return await self.script(keys=[key])

    async def pipeline_sets(self, keys: list[str]) -> Any:
        pipe = self.c.pipeline()
        for k in keys:
            pipe.set(k, "v")
        return await pipe.execute()

    async def get(self, key: str) -> Any:
        return await self.c.get(key)

    async def set(self, key: str, value: str) -> Any:
        return await self.c.set(key, value)

    async def sharded_pubsub(self, channels: list[str], messages: int, port: int) -> str:
        ps = self.c.pubsub()
        for ch in channels:
            await ps.ssubscribe(ch)
        confirmed, deadline = 0, time.monotonic() + 5
        while confirmed < len(channels) and time.monotonic() < deadline:
            msg = await ps.get_sharded_message(timeout=0.2)
            confirmed += msg is not None and msg.get("type") == "ssubscribe"
        for ch in channels:
            for i in range(messages):
                await self.c.spublish(ch, str(i))
        got = 0
        deadline = time.monotonic() + 5
        while got < messages * len(channels) and time.monotonic() < deadline:
            msg = await ps.get_sharded_message(ignore_subscribe_messages=True, timeout=0.2)
            if msg is not None and msg.get("type") == "smessage":
                got += 1
        await ps.aclose()
        return f"{got}/{messages * len(channels)} received"


class Coredis(Adapter):
    name = "coredis RedisCluster"

    async def open(self, port: int) -> None:
        import coredis

        self.version = coredis.__version__
        self.stack = contextlib.AsyncExitStack()
        self.c = await self.stack.enter_async_context(coredis.RedisCluster("127.0.0.1", port))
        self.script = self.c.register_script(SCRIPT)

    async def close(self) -> None:
        await self.stack.aclose()

    async def evalsha(self, key: str) -> Any:
        return await self.script(keys=[key], args=[])

    async def pipeline_sets(self, keys: list[str]) -> Any:
        async with self.c.pipeline(transaction=False) as pipe:
            for k in keys:
                pipe.set(k, "v")
        return True

    async def get(self, key: str) -> Any:
        return await self.c.get(key)

    async def set(self, key: str, value: str) -> Any:
        return await self.c.set(key, value)

    async def sharded_pubsub(self, channels: list[str], messages: int, port: int) -> str:
        got = 0
        async with self.c.sharded_pubsub(channels=channels, ignore_subscribe_messages=True) as ps:
            for ch in channels:
                for i in range(messages):
                    await self.c.spublish(ch, str(i))
            deadline = time.monotonic() + 5
            while got < messages * len(channels) and time.monotonic() < deadline:
                msg = await ps.get_message(timeout=0.2)
                if msg is not None and msg.get("type") in ("message", "smessage"):
                    got += 1
        return f"{got}/{messages * len(channels)} received"


class Glide(Adapter):
    name = "valkey-glide GlideClusterClient"

    async def open(self, port: int) -> None:
        from importlib.metadata import version

        from glide import GlideClusterClient, GlideClusterClientConfiguration, NodeAddress, Script

        self.version = version("valkey-glide")
        self.c = await GlideClusterClient.create(GlideClusterClientConfiguration([NodeAddress("127.0.0.1", port)]))
        self.script = Script(SCRIPT)

    async def close(self) -> None:
        await self.c.close()

    async def evalsha(self, key: str) -> Any:
        return await self.c.invoke_script(self.script, keys=[key])

    async def pipeline_sets(self, keys: list[str]) -> Any:
        from glide import ClusterBatch

        batch = ClusterBatch(is_atomic=False)
        for k in keys:
            batch.set(k, "v")
        return await self.c.exec(batch, raise_on_error=True)

    async def get(self, key: str) -> Any:
        return await self.c.get(key)

    async def set(self, key: str, value: str) -> Any:
        return await self.c.set(key, value)

    async def sharded_pubsub(self, channels: list[str], messages: int, port: int) -> str:
        from glide import GlideClusterClient, GlideClusterClientConfiguration, NodeAddress

        sub = await GlideClusterClient.create(GlideClusterClientConfiguration([NodeAddress("127.0.0.1", port)]))
        await sub.ssubscribe(set(channels), timeout_ms=5000)  # dynamic: waits for the confirmations
        for ch in channels:
            for i in range(messages):
                await self.c.publish(str(i), ch, sharded=True)
        got = 0
        with contextlib.suppress(TimeoutError):
            while got < messages * len(channels):
                await asyncio.wait_for(sub.get_pubsub_message(), 5)
                got += 1
        await sub.close()
        return f"{got}/{messages * len(channels)} received"


async def rate(op: Callable[[], Awaitable[Any]], seconds: float, concurrency: int, per_call: int = 1) -> float:
    done = 0
    stop = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal done
        while time.monotonic() < stop:
            await op()
            done += per_call

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.monotonic() - started)


def key_on(cluster: LocalCluster, port: int, prefix: str) -> str:
    """A key (``prefix`` + n) whose slot the primary on ``port`` serves now."""
    return cluster.key_on(port, prefix)


def migrate(cluster: LocalCluster, key: str, src: int, dst: int, *, finish: bool) -> None:
    """Move ``key``'s slot from ``src`` to ``dst`` (MIGRATE the key); with ``finish`` assign the slot to ``dst``."""
    cluster.migrate(key, src, dst, finish=finish)


async def redirects(adapter: Adapter, cluster: LocalCluster) -> tuple[bool | str, bool | str]:
    primaries = [n.port for n in cluster.primary_nodes()]
    moved_key = key_on(cluster, primaries[0], "moved:")
    ask_key = key_on(cluster, primaries[0], "ask:")
    await adapter.set(moved_key, "m")
    await adapter.set(ask_key, "a")
    migrate(cluster, moved_key, primaries[0], primaries[1], finish=True)
    try:
        moved: bool | str = (await adapter.get(moved_key)) in (b"m", "m")
    except Exception as exc:  # the finding is which error
        moved = f"{type(exc).__name__}: {exc}"
    migrate(cluster, ask_key, primaries[0], primaries[1], finish=False)
    try:
        ask: bool | str = (await adapter.get(ask_key)) in (b"a", "a")
    except Exception as exc:
        ask = f"{type(exc).__name__}: {exc}"
    import redis

    probe = redis.Redis(host="127.0.0.1", port=primaries[0])
    cluster.assign(int(probe.cluster("KEYSLOT", ask_key)), primaries[1])  # finish the half-done migration
    probe.close()
    return moved, ask


async def failover(adapter: Adapter, cluster: LocalCluster, concurrency: int) -> dict[str, Any]:
    """Steady EVALSHA load (a quarter of it on the victim's slots); kill -9 the victim primary; watch 3 s past
    the cluster's own failover."""
    victim = cluster.primary_nodes()[0]
    victim_keys = [key_on(cluster, victim.port, f"fo{i}:") for i in range(3)]
    errors: Counter[str] = Counter()
    samples: dict[str, str] = {}
    events: list[tuple[float, bool, bool, float]] = []  # (time done, on victim slots, ok, latency)
    stop = False

    async def worker(i: int) -> None:
        on_victim = i % 4 == 0
        while not stop:
            key = victim_keys[i % 3] if on_victim else f"{{f:{random.randrange(USERS)}}}:n"
            started = time.monotonic()
            try:
                await asyncio.wait_for(adapter.evalsha(key), 5)
                events.append((time.monotonic(), on_victim, True, time.monotonic() - started))
            except Exception as exc:
                name = type(exc).__name__
                errors[name] += 1
                samples.setdefault(name, str(exc)[:120])
                events.append((time.monotonic(), on_victim, False, time.monotonic() - started))
                await asyncio.sleep(0.01)

    tasks = [asyncio.create_task(worker(i)) for i in range(concurrency)]
    await asyncio.sleep(1.0)
    killed = cluster.kill_primary(victim)
    killed_at = time.monotonic()
    seen = await asyncio.to_thread(cluster.wait_for_failover, killed, 30)
    await asyncio.sleep(3.0)
    stop = True
    await asyncio.gather(*tasks)
    end = time.monotonic()
    await asyncio.to_thread(cluster.restart, killed, 30)
    after = [e for e in events if e[0] >= killed_at]
    failures = [e for e in after if not e[2]]
    victim_failures = [e for e in failures if e[1]]
    recovered = (
        next((e[0] for e in after if e[1] and e[2] and e[0] > victim_failures[0][0]), None) if victim_failures else None
    )
    last_second = [e for e in events if e[0] >= end - 1.0]
    return {
        "cluster_failover_s": round(seen.seconds, 2),
        "errors": dict(errors),
        "error_samples": samples,
        "errors_on_other_shards": len(failures) - len(victim_failures),
        "last_error_after_kill_s": round(failures[-1][0] - killed_at, 2) if failures else 0.0,
        "failed_slots_first_success_after_kill_s": round(recovered - killed_at, 2) if recovered else None,
        "failed_slots_longest_ok_call_s": round(max((e[3] for e in after if e[1] and e[2]), default=0.0), 2),
        "ops_per_s_before": sum(1 for e in events if e[2] and e[0] < killed_at) / 1.0,
        "ops_ok_last_second": sum(1 for e in last_second if e[2]),
        "ops_failed_last_second": sum(1 for e in last_second if not e[2]),
    }


async def run_client(adapter: Adapter, seconds: float, concurrency: int) -> Result:
    with LocalCluster(primaries=3, replicas=1) as cluster:
        port = cluster.nodes[0].port
        await adapter.open(port)
        result = Result(adapter.name, adapter.version)
        try:
            users = [f"{{u:{i}}}:n" for i in range(USERS)]
            result.evalsha_per_s = round(
                await rate(lambda: adapter.evalsha(random.choice(users)), seconds, concurrency)
            )
            result.pipelined_cmds_per_s = round(
                await rate(
                    lambda: adapter.pipeline_sets(random.sample(users, PIPELINE_DEPTH)),
                    seconds,
                    max(1, concurrency // 8),
                    PIPELINE_DEPTH,
                )
            )
            result.moved_followed, result.ask_followed = await redirects(adapter, cluster)
            channels = [key_on(cluster, n.port, "ch:") for n in cluster.primary_nodes()]
            result.sharded_pubsub = await adapter.sharded_pubsub(channels, 100, port)
            result.failover = await failover(adapter, cluster, concurrency // 2)
        finally:
            await adapter.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--out", default="bench/results/cluster-clients.json")
    parser.add_argument("--only", choices=["redis-py", "coredis", "glide"], action="append")
    parser.add_argument("--repeat", type=int, default=1, help="runs per client (report each)")
    args = parser.parse_args()
    adapters = {"redis-py": RedisPy, "coredis": Coredis, "glide": Glide}
    results = []
    for name, cls in adapters.items():
        if args.only and name not in args.only:
            continue
        for _ in range(args.repeat):
            result = asyncio.run(run_client(cls(), args.seconds, args.concurrency))
            print(json.dumps(asdict(result)), flush=True)
            results.append(asdict(result))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
