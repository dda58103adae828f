"""Scenarios 1-3: handshakes, echo (throughput and latency), memory per idle connection.

Both servers run side by side on the server core (one under load at a time); the generator and
Redis share the other core. Rounds alternate the order of the peers (A B, B A, ...), so drift of a
noisy machine hits both alike; the report takes medians over rounds and the ratio of medians.
Each peer gets its own users (token files ``reference`` / ``node``), so their registry keys never meet.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from bench import generator as loadgen
from bench import peers
from bench.peers import PEERS, Server
from stickyws.localproc import RedisServer
from stickyws.server.auth import TokenVerifier
from stickyws.settings import Settings

#: Token lifetime: longer than any run.
TOKEN_TTL_S = 7200
#: Idle scenario: the first stage is the baseline (it absorbs each runtime's one-time costs).
IDLE_BASELINE = 100
#: Settle time before reading RSS at a stage (lets timers and GC run).
IDLE_SETTLE_S = 1.0
#: A stage counts when at least this share of its connections opened (the rest failed after retries).
MIN_OPEN_FRACTION = 0.98


def listen_overflows() -> int:
    """The kernel's ``TcpExt ListenOverflows`` counter (accept queue full; system-wide)."""
    lines = Path("/proc/net/netstat").read_text().splitlines()
    for head, values in zip(lines[::2], lines[1::2], strict=False):
        if head.startswith("TcpExt:"):
            table = dict(zip(head.split()[1:], values.split()[1:], strict=True))
            return int(table.get("ListenOverflows", 0))
    return 0


@dataclass(frozen=True)
class Bench:
    """What every scenario shares: settings, key, Redis, token files, cores, work directory."""

    settings: Settings
    secret: str
    redis_url: str
    tokens: dict[str, Path]
    server_core: int | None
    gen_core: int | None
    workdir: Path


def write_tokens(settings: Settings, secret: str, workdir: Path, count: int) -> dict[str, Path]:
    """One token file per peer (users ``<peer>-<i>``), signed like ``stickyws token``."""
    verifier = TokenVerifier(secret, settings["jwt_audience"])
    out = {}
    for peer in PEERS:
        path = workdir / f"tokens-{peer}.txt"
        path.write_text("\n".join(verifier.issue(f"{peer}-{i}", TOKEN_TTL_S) for i in range(count)) + "\n")
        out[peer] = path
    return out


def _order(round_no: int) -> tuple[str, ...]:
    return PEERS if round_no % 2 == 0 else tuple(reversed(PEERS))


def _timed(server: Server, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    cpu0, t0 = server.cpu_s(), time.monotonic()
    result = fn()
    wall = time.monotonic() - t0
    result["server_cpu_cores"] = (server.cpu_s() - cpu0) / wall
    return result


#: Scenarios 1-2 (:func:`bench.variants.run_traffic`): the variants (:data:`bench.variants.VARIANTS`) and what
#: each runs.
TRAFFIC_PLAN: dict[str, list[str]] = {
    "reference": ["handshake", "echo", "latency"],
    "node": ["handshake", "echo", "latency"],
    "reference-amo": ["echo"],
    "node-commit": ["echo", "latency"],
    "reference-memory": ["echo"],
}


def _redis_used(client: redis.Redis) -> int:
    info: dict[str, Any] = client.info("memory")
    return int(info["used_memory_dataset"])


def run_idle(b: Bench, rounds: int, stages: list[int], conc: int, say: Callable[[str], None]) -> list[dict[str, Any]]:
    """Scenario 3: a fresh server and a fresh redis-server (on the generator core) per round and peer;
    the server's RSS and Redis' ``used_memory_dataset`` at each stage over the baseline stage."""
    records: list[dict[str, Any]] = []
    all_stages = [IDLE_BASELINE, *(IDLE_BASELINE + n for n in stages)]
    for r in range(rounds):
        for peer in _order(r):
            with RedisServer() as registry:
                if b.gen_core is not None and registry.pid is not None:
                    os.sched_setaffinity(registry.pid, {b.gen_core})
                client = redis.Redis.from_url(registry.url)
                server = peers.start(peer, settings=b.settings, secret=b.secret, redis_url=registry.url,
                                     core=b.server_core, workdir=b.workdir, tag=f"idle{r}")  # fmt: skip
                session = loadgen.IdleSession(server.url, b.tokens[peer], all_stages, core=b.gen_core, conc=conc)
                try:
                    base: tuple[int, int, int] | None = None
                    for n in all_stages:
                        overflows0 = listen_overflows()
                        rep = session.report()
                        if rep["open"] < n * MIN_OPEN_FRACTION:
                            raise loadgen.LoadgenError(f"idle stage {n}: only {rep['open']} open ({rep['last_error']})")
                        time.sleep(IDLE_SETTLE_S)
                        rss, used = server.rss_bytes(), _redis_used(client)
                        if base is None:
                            base = (rss, used, int(rep["open"]))
                        else:
                            conns = int(rep["open"]) - base[2]  # what is really open (a few may have failed)
                            rec = {
                                "scenario": "idle", "peer": peer, "round": r, "connections": n - IDLE_BASELINE,
                                "open": conns, "server_bytes_per_conn": (rss - base[0]) / conns,
                                "redis_bytes_per_conn": (used - base[1]) / conns,
                                "rss_bytes": rss, "opened_in_s": rep["opened_in_s"], "dropped": rep["dropped"],
                                "open_errors": rep["errors"], "listen_overflows": listen_overflows() - overflows0,
                                "gen_cpu_s": rep["gen_cpu_s"],
                            }  # fmt: skip
                            records.append(rec)
                            say(f"  round {r + 1} {peer:<9} {conns:>6} idle: server "
                                f"{rec['server_bytes_per_conn'] / 1024:5.1f} KB/conn, registry "
                                f"{rec['redis_bytes_per_conn'] / 1024:4.2f} KB/conn, "
                                f"opened in {rep['opened_in_s']:.1f} s, {rep['errors']} failed attempts, "
                                f"{rec['listen_overflows']} listen-queue overflows (system-wide)"
                                + (f", {rep['dropped']} dropped" if rep["dropped"] else ""))  # fmt: skip
                        session.proceed()
                    session.finish(timeout_s=60)
                finally:
                    session.kill()
                    server.stop()
                    client.close()
    return records
