"""How cost grows with work: CPU per message and per delivery, memory per connection, as one server holds
more connections, and as the same load spreads over 1, 2 and 3 servers behind the twin on one registry.

Three parts, each its own bounded measurement (``python -m bench.run --only growth --growth-parts server``,
``memory`` or ``fleet``; the default runs all three):

* ``server``: one reference server (on the server core) and a fresh redis-server (on the generator core)
  per round; the generator (``loadgen -mode idle``) holds idle connections so that each stage has
  ``STAGES`` connections open in all, ``ACTIVE`` of them the active ones below. At each stage three
  windows, the server's and Redis's CPU read from ``/proc/<pid>/stat`` by PID around each: ``idle``
  (nothing but the idle connections' pings), ``messages`` (``ACTIVE`` connections sending exactly-once
  messages at ``MESSAGE_RATE`` in all, ``loadgen -mode latency``) and ``deliveries`` (``ACTIVE``
  subscribers over ``TOPICS`` topics, ``PUBLISH_RATE`` publications/s from :mod:`bench.fanout_pub`, the
  fan-out generator's steady-stream phase). The messages window is the difference of a long and a
  ``PROBE_S`` run, so the handshakes and closes of its connections cancel out. Every cost is all-in: the
  idle connections' pings in a window are charged to its messages or deliveries. The baseline of
  ``BASELINE`` connections runs the windows too, unrecorded, as the server's warm-up.
* ``memory``: the same stages with idle connections only (the windows leave a few MB behind that would
  read as memory per connection): the server's VmRSS, Redis's ``used_memory_dataset`` and the kernel's
  unreclaimable slab and TCP pages over the baseline's, per connection, as scenario 3 reads them (the
  kernel's halved: both ends of a connection are sockets of this machine). At the last stage, the
  server's CPU over one ``ping_interval_s``: in it every connection is pinged once, so it is the idle
  connections' steady cost (the ``server`` part's short idle window may catch none of their pings).
* ``fleet``: ``FLEET_CONNECTIONS`` connections through the twin's HAProxy onto 1, 2, 3 servers (servers
  and HAProxy on the server core) on one registry (a redis-server on the generator core), the same three
  windows; CPU summed over every server, Redis and HAProxy separately. The twin runs at the storm's time
  scale (health checks every quarter second), as in scenarios 4 and 7.

Rounds alternate the order of the fleet sizes (1 2 3, 3 2 1, ...); stages grow within a round. The page
takes medians. Every process started here is stopped by its PID; every generator run has a timeout.
"""

from __future__ import annotations

import contextlib
import math
import os
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import redis

from bench import generator as loadgen
from bench import peers
from bench.fanout import publisher
from bench.host import redis_on
from bench.report import Row
from bench.scenarios import MIN_OPEN_FRACTION, TOKEN_TTL_S
from stickyws.localproc import RedisServer
from stickyws.server.auth import TokenVerifier
from stickyws.settings import Settings
from stickyws.twin.cluster import TwinCluster

#: Connections open on the one server at each stage (the active ones included).
STAGES = (1000, 5000, 19_500)
#: The baseline stage of the memory reading (it absorbs one-time costs), as in scenario 3.
BASELINE = 100
#: Connections that send (messages window) or subscribe (deliveries window); the rest sit idle.
ACTIVE = 200
#: Messages/s over the ``ACTIVE`` connections (10/s each), exactly-once (one commit each).
MESSAGE_RATE = 2000.0
#: Topics the ``ACTIVE`` subscribers are spread over (10 each), and publications/s round robin over them.
TOPICS = 20
PUBLISH_RATE = 200.0
#: Seconds of each window; the messages window's short run (subtracted).
WINDOW_S = 4.0
IDLE_WINDOW_S = 3.0
PROBE_S = 0.2
#: Settle time before reading memory at a stage.
SETTLE_S = 1.0
#: Servers behind the twin in the fleet part, and the connections they hold in all.
FLEET_SIZES = (1, 2, 3)
FLEET_CONNECTIONS = 3000
#: Connections opened at a time.
OPEN_CONC = 200
#: Seconds a generator run may take beyond its own duration.
GEN_SLACK_S = 60.0
#: Verdicts: a per-unit cost within this share of the first stage's is flat (the machine's noise); beyond
#: it, the log-log slope against the connections (or servers) names the growth.
FLAT_MARGIN = 0.25
SUBLINEAR_SLOPE, LINEAR_SLOPE = 0.7, 1.3
PARTS = ("server", "memory", "fleet")


def verdict(first: float, last: float, factor: float) -> str:
    """The growth of a per-unit cost from ``first`` to ``last`` while the work grew ``factor``-fold:
    ``flat`` (within ``FLAT_MARGIN``), ``sub-linear``, ``linear`` or ``worse than linear``."""
    if first <= 0 or last <= 0 or factor <= 1:
        raise ValueError(f"verdict needs positive costs and a factor above 1, not {first}, {last}, {factor}")
    ratio = last / first
    if ratio <= 1 + FLAT_MARGIN:
        return "flat"
    slope = math.log(ratio) / math.log(factor)
    if slope < SUBLINEAR_SLOPE:
        return "sub-linear"
    return "linear" if slope <= LINEAR_SLOPE else "worse than linear"


def write_tokens(settings: Settings, secret: str, workdir: Path, prefix: str, count: int) -> Path:
    """A token file of users ``<prefix>-<i>`` (distinct users, so no connection takes over another)."""
    verifier = TokenVerifier(secret, settings["jwt_audience"])
    path = workdir / f"tokens-growth-{prefix}.txt"
    path.write_text("\n".join(verifier.issue(f"{prefix}-{i}", TOKEN_TTL_S) for i in range(count)) + "\n")
    return path


def _cpu(groups: dict[str, list[int]]) -> dict[str, float]:
    return {name: sum(peers.process_cpu_s(pid) for pid in pids) for name, pids in groups.items()}


@contextlib.contextmanager
def _window(groups: dict[str, list[int]], out: dict[str, float]) -> Iterator[None]:
    """CPU seconds of each group of processes and the wall time over the ``with`` block, into ``out``."""
    cpu0, t0 = _cpu(groups), time.monotonic()
    yield
    out["wall_s"] = time.monotonic() - t0
    out.update({f"{name}_cpu_s": v - cpu0[name] for name, v in _cpu(groups).items()})


def measure_load(url: str, redis_url: str, tokens: dict[str, Path], groups: dict[str, list[int]],
                 gen_core: int | None, workdir: Path, tag: str) -> dict[str, Any]:  # fmt: skip
    """The three windows (idle, messages, deliveries) against ``url``; CPU seconds per group of processes."""
    rec: dict[str, Any] = {}
    idle: dict[str, float] = {}
    with _window(groups, idle):
        time.sleep(IDLE_WINDOW_S)
    runs = []
    for duration in (PROBE_S, WINDOW_S):
        win: dict[str, float] = {}
        with _window(groups, win):
            rep = loadgen.run("latency", url, tokens["active"], core=gen_core, timeout_s=duration + GEN_SLACK_S,
                              conc=ACTIVE, rate=MESSAGE_RATE, duration=duration)  # fmt: skip
        runs.append((win, rep))
    (short, short_rep), (long, long_rep) = runs
    messages = int(long_rep["round_trips"]) - int(short_rep["round_trips"])
    if messages <= 0:
        raise loadgen.LoadgenError(f"growth messages: none got through ({long_rep['last_error']})")
    session = loadgen.FanoutSession(
        url, tokens["subscribers"], publisher("reference", redis_url), core=gen_core,
        log_path=workdir / f"loadgen-growth-{tag}.log", client="stickyws", n=ACTIVE, topics=TOPICS, reps=1,
        rate=PUBLISH_RATE, duration=WINDOW_S, conc=ACTIVE,
    )  # fmt: skip
    fan: dict[str, float] = {}
    try:
        ready = session.report()
        if ready["open"] < ACTIVE:
            raise loadgen.LoadgenError(f"growth deliveries: only {ready['open']} of {ACTIVE} subscribed")
        session.proceed()
        session.report()  # phase a: one publication to every subscriber (not measured)
        with _window(groups, fan):
            session.proceed()
            stream = session.report()
        session.finish(timeout_s=GEN_SLACK_S)
    finally:
        session.kill()
    for name in groups:
        rec[f"idle_{name}_cores"] = idle[f"{name}_cpu_s"] / idle["wall_s"]
        rec[f"{name}_us_per_message"] = (long[f"{name}_cpu_s"] - short[f"{name}_cpu_s"]) / messages * 1e6
        rec[f"{name}_us_per_delivery"] = fan[f"{name}_cpu_s"] / max(int(stream["deliveries"]), 1) * 1e6
        rec[f"{name}_us_per_publication"] = fan[f"{name}_cpu_s"] / max(int(stream["publications"]), 1) * 1e6
    rec.update({
        "messages": messages, "message_rate_per_s": float(long_rep["rate_per_s"]),
        "message_errors": int(short_rep["errors"]) + int(long_rep["errors"]),
        "message_p99_ms": float(long_rep["p99_ms"]), "message_gen_cores": float(long_rep["gen_cpu_cores"]),
        "deliveries": int(stream["deliveries"]), "publications": int(stream["publications"]),
        "deliveries_complete": bool(stream["complete"]), "delivery_rate_per_s": float(stream["deliveries_per_s"]),
        "delivery_p99_ms": float(stream["p99_ms"]), "delivery_gen_cores": float(stream["gen_cpu_cores"]),
    })  # fmt: skip
    return rec


def kernel_bytes() -> int:
    """The kernel's unreclaimable slab (sockets, epoll items, files) and its TCP buffer pages, machine-wide."""
    slab = next(line for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("SUnreclaim:"))
    tcp = next(line for line in Path("/proc/net/sockstat").read_text().splitlines() if line.startswith("TCP:"))
    fields = tcp.split()
    return int(slab.split()[1]) * 1024 + int(fields[fields.index("mem") + 1]) * os.sysconf("SC_PAGE_SIZE")


def _redis_dataset(client: redis.Redis) -> int:
    info: dict[str, Any] = client.info("memory")
    return int(info["used_memory_dataset"])


def run_server(settings: Settings, secret: str, workdir: Path, *, part: str, rounds: int, stages: tuple[int, ...],
               server_core: int | None, gen_core: int | None,
               say: Callable[[str], None]) -> list[dict[str, Any]]:  # fmt: skip
    """The ``server`` part (CPU windows at each stage, the baseline's as a warm-up) or the ``memory`` part
    (idle connections only, memory at each stage over the baseline's): ``rounds`` rounds, each a fresh server
    and registry growing through ``stages``."""
    windows = part == "server"
    ping_s = float(settings["ping_interval_s"] or 0)
    tokens = {
        "idle": write_tokens(settings, secret, workdir, "idle", max(stages)),
        "active": write_tokens(settings, secret, workdir, "active", ACTIVE),
        "subscribers": write_tokens(settings, secret, workdir, "sub", ACTIVE),
    }
    records: list[dict[str, Any]] = []
    for r in range(rounds):
        with RedisServer() as registry:
            if gen_core is not None and registry.pid is not None:
                os.sched_setaffinity(registry.pid, {gen_core})
            client = redis.Redis.from_url(registry.url)
            server = peers.start("reference", settings=settings, secret=secret, redis_url=registry.url,
                                 core=server_core, workdir=workdir, tag=f"growth-{part}{r}")  # fmt: skip
            idle_counts = [BASELINE, *((n - ACTIVE) if windows else n for n in stages)]
            session = loadgen.IdleSession(server.url, tokens["idle"], idle_counts, core=gen_core, conc=OPEN_CONC)
            try:
                base: tuple[int, int, int, int] | None = None
                for n, want in zip((0, *stages), idle_counts, strict=True):
                    rep = session.report()
                    if rep["open"] < want * MIN_OPEN_FRACTION:
                        raise loadgen.LoadgenError(f"growth stage {n}: only {rep['open']} open ({rep['last_error']})")
                    time.sleep(SETTLE_S)
                    rec: dict[str, Any] = {"part": part, "round": r, "connections": n, "idle_open": int(rep["open"]),
                                           "opened_in_s": rep["opened_in_s"]}  # fmt: skip
                    if windows:
                        assert registry.pid is not None
                        groups = {"server": [server.pid], "redis": [registry.pid]}
                        rec.update(measure_load(server.url, registry.url, tokens, groups, gen_core, workdir,
                                                f"{r}-{n}"))  # fmt: skip
                        rec["rss_bytes_after"] = server.rss_bytes()
                    else:
                        rss, used, kernel = server.rss_bytes(), _redis_dataset(client), kernel_bytes()
                        if base is None:
                            base = (rss, used, int(rep["open"]), kernel)
                        else:
                            conns = int(rep["open"]) - base[2]
                            rec.update({
                                "server_bytes_per_conn": (rss - base[0]) / conns,
                                "redis_bytes_per_conn": (used - base[1]) / conns,
                                # both ends of every connection are sockets of this kernel: half is the server's
                                "kernel_bytes_per_conn": (kernel - base[3]) / conns / 2,
                                "rss_bytes": rss, "baseline_rss_bytes": base[0],
                            })  # fmt: skip
                            if n == stages[-1] and ping_s:
                                # every connection open through a window of one ping interval is pinged once in it
                                idle: dict[str, float] = {}
                                with _window({"server": [server.pid]}, idle):
                                    time.sleep(ping_s)
                                rec["ping_interval_server_cores"] = idle["server_cpu_s"] / idle["wall_s"]
                    if n:  # the baseline is no stage
                        records.append(rec)
                        say(_line(rec, f"round {r + 1} {part} {n:>6,} connections"))
                    session.proceed()
                session.finish(timeout_s=60)
            finally:
                session.kill()
                server.stop()
                client.close()
    return records


def _line(rec: dict[str, Any], head: str) -> str:
    memory = (f"memory {rec['server_bytes_per_conn'] / 1024:.2f} + {rec['redis_bytes_per_conn'] / 1024:.2f} KB/conn "
              f"(kernel {rec['kernel_bytes_per_conn'] / 1024:.2f} KB), "
              if "server_bytes_per_conn" in rec else "")  # fmt: skip
    if "idle_server_cores" not in rec:
        ping = rec.get("ping_interval_server_cores")
        return f"  {head}: {memory}opened in {rec['opened_in_s']:.1f} s" + (
            f", idle server over one ping interval {ping:.3f} cores" if ping is not None else ""
        )
    return (
        f"  {head}: {memory}idle server {rec['idle_server_cores']:.3f} cores; per message server "
        f"{rec['server_us_per_message']:.0f} us, Redis {rec['redis_us_per_message']:.0f} us "
        f"({rec['message_rate_per_s']:,.0f}/s, p99 {rec['message_p99_ms']:.1f} ms); per delivery server "
        f"{rec['server_us_per_delivery']:.1f} us, Redis {rec['redis_us_per_delivery']:.1f} us "
        f"({rec['delivery_rate_per_s']:,.0f}/s{'' if rec['deliveries_complete'] else ', INCOMPLETE'}); generator "
        f"{rec['message_gen_cores']:.2f} / {rec['delivery_gen_cores']:.2f} cores"
        + (f"; HAProxy {rec['haproxy_us_per_message']:.0f} us/message" if "haproxy_us_per_message" in rec else "")
        + (f"; {rec['message_errors']} message errors" if rec["message_errors"] else "")
    )


def _fleet_order(round_no: int) -> tuple[int, ...]:
    return FLEET_SIZES if round_no % 2 == 0 else tuple(reversed(FLEET_SIZES))


def run_fleet(settings: Settings, secret: str, workdir: Path, *, rounds: int, connections: int,
              server_core: int | None, gen_core: int | None,
              say: Callable[[str], None]) -> list[dict[str, Any]]:  # fmt: skip
    """The ``fleet`` part: ``connections`` through the twin onto 1, 2, 3 servers on one registry."""
    from bench.storm import TIME_SCALE

    tokens = {
        "idle": write_tokens(settings, secret, workdir, "fleet-idle", connections - ACTIVE),
        "active": write_tokens(settings, secret, workdir, "fleet-active", ACTIVE),
        "subscribers": write_tokens(settings, secret, workdir, "fleet-sub", ACTIVE),
    }
    records: list[dict[str, Any]] = []
    before = os.sched_getaffinity(0)
    try:
        for r in range(rounds):
            for size in _fleet_order(r):
                with redis_on(gen_core) as registry:
                    if server_core is not None:  # the twin's servers and HAProxy inherit the server core
                        os.sched_setaffinity(0, {server_core})
                    with TwinCluster(settings, servers=size, time_scale=TIME_SCALE, jwt_secret=secret,
                                     registry_url=registry.url) as twin:  # fmt: skip
                        os.sched_setaffinity(0, before)
                        assert twin.haproxy is not None
                        assert registry.pid is not None
                        groups = {
                            "server": [p.proc.pid for p in twin.procs.values()], "redis": [registry.pid],
                            "haproxy": [twin.haproxy.pid],
                        }  # fmt: skip
                        idle = connections - ACTIVE
                        session = loadgen.IdleSession(twin.url, tokens["idle"], [idle], core=gen_core, conc=OPEN_CONC)
                        try:
                            rep = session.report()
                            if rep["open"] < idle * MIN_OPEN_FRACTION:
                                raise loadgen.LoadgenError(
                                    f"growth fleet: only {rep['open']} open ({rep['last_error']})"
                                )
                            time.sleep(SETTLE_S)
                            rec = {
                                "part": "fleet", "round": r, "servers": size, "connections": connections,
                                "idle_open": int(rep["open"]),
                                "per_server": [twin.connections(name) for name in twin.procs],
                                **measure_load(twin.url, registry.url, tokens, groups, gen_core, workdir,
                                               f"fleet{r}-{size}"),
                            }  # fmt: skip
                            session.proceed()
                            session.finish(timeout_s=60)
                        finally:
                            session.kill()
                    records.append(rec)
                    say(_line(rec, f"round {r + 1} {size} server{'s' if size > 1 else ' '} ({rec['per_server']})"))
    finally:
        os.sched_setaffinity(0, before)
    return records


def run_parts(settings: Settings, secret: str, workdir: Path, *, parts: set[str], rounds: int, quick: bool,
              nofile: int, fd_spare: int, server_core: int | None, gen_core: int | None,
              say: Callable[[str], None]) -> dict[str, Any]:  # fmt: skip
    """Run ``parts`` (of ``PARTS``); returns ``{"records": [...], "meta": {part: {...}}}`` as the results store it.

    The top stage is fitted under the open-file limit ``nofile`` (``fd_spare`` kept for everything else);
    ``quick`` runs tiny sizes for development (not for the page)."""
    unknown = parts - set(PARTS)
    if unknown or not parts:
        raise ValueError(f"growth parts must be among {', '.join(PARTS)}, not {', '.join(sorted(unknown)) or 'none'}")
    top = min(STAGES[-1], (nofile - fd_spare) // 500 * 500)
    stages = (400, 800) if quick else (*(n for n in STAGES[:-1] if n < top), top)
    connections = 600 if quick else FLEET_CONNECTIONS
    records: list[dict[str, Any]] = []
    meta: dict[str, Any] = {}
    for part in PARTS:
        if part not in parts:
            continue
        load0 = os.getloadavg()[0]
        if part == "fleet":
            say(f"growth, fleet part: {rounds} rounds, {connections:,} connections over {FLEET_SIZES} servers")
            records += run_fleet(settings, secret, workdir, rounds=rounds, connections=connections,
                                 server_core=server_core, gen_core=gen_core, say=say)  # fmt: skip
        else:
            say(f"growth, {part} part: {rounds} rounds, stages {', '.join(map(str, stages))} connections")
            records += run_server(settings, secret, workdir, part=part, rounds=rounds, stages=stages,
                                  server_core=server_core, gen_core=gen_core, say=say)  # fmt: skip
        meta[part] = {
            "written_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rounds": rounds,
            "load_before": load0, "load_after": os.getloadavg()[0],
        }  # fmt: skip
    return {"records": records, "meta": meta}


def merge(previous: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """``new`` with the records and meta of the parts not run this time kept from ``previous``."""
    parts = set(new["meta"])
    old = previous or {"records": [], "meta": {}}
    return {
        "records": [r for r in old["records"] if r["part"] not in parts] + new["records"],
        "meta": {**{k: v for k, v in old["meta"].items() if k not in parts}, **new["meta"]},
    }


def _by(part: str) -> str:
    return "servers" if part == "fleet" else "connections"


def median(records: list[dict[str, Any]], part: str, key: str, **match: Any) -> float:
    """Median of ``key`` over the rounds of ``part`` (and ``match``)."""
    values = [float(r[key]) for r in records
              if r["part"] == part and key in r and all(r.get(k) == v for k, v in match.items())]  # fmt: skip
    if not values:
        raise ValueError(f"no growth {part} records with {key} and {match}")
    return statistics.median(values)


def stage_sizes(records: list[dict[str, Any]], part: str) -> list[int]:
    """The stages (connections) of the ``server`` and ``memory`` parts, or the fleet sizes (servers), ascending."""
    return sorted({int(r[_by(part)]) for r in records if r["part"] == part})


def _series(records: list[dict[str, Any]], part: str, keys: tuple[str, ...]) -> list[float]:
    """Per stage (or fleet size): the median of the sum of ``keys``."""
    out = []
    for n in stage_sizes(records, part):
        values = [sum(float(r[k]) for k in keys) for r in records if r["part"] == part and int(r[_by(part)]) == n]
        out.append(statistics.median(values))
    return out


#: The resources the rows judge, per part: (label, keys summed, unit, format).
RESOURCES: dict[str, tuple[tuple[str, tuple[str, ...], str, str], ...]] = {
    "server": (
        ("server CPU per message", ("server_us_per_message",), "us", ".0f"),
        ("server CPU per delivery", ("server_us_per_delivery",), "us", ".1f"),
    ),
    "memory": (
        ("memory per idle connection (server + registry)", ("server_bytes_per_conn", "redis_bytes_per_conn"), "KB",
         ".2f"),
    ),
    "fleet": (
        ("CPU per message (servers + Redis + HAProxy)", ("server_us_per_message", "redis_us_per_message",
                                                        "haproxy_us_per_message"), "us", ".0f"),
        ("CPU per delivery (servers + Redis + HAProxy)", ("server_us_per_delivery", "redis_us_per_delivery",
                                                         "haproxy_us_per_delivery"), "us", ".1f"),
    ),
}  # fmt: skip


def rows(stored: dict[str, Any] | None) -> list[Row]:
    """Information rows: each resource's cost per unit at each stage and the verdict on its growth (``verdict``)
    over the last step of the stages, or from one server to the most in the fleet."""
    if not stored or not stored.get("records"):
        return []
    records = stored["records"]
    out = []
    for part, resources in RESOURCES.items():
        sizes = stage_sizes(records, part)
        if len(sizes) < 2:
            continue
        what = (f"{' -> '.join(map(str, sizes))} servers behind the twin" if part == "fleet"
                else f"{' -> '.join(f'{n / 1000:g}k' for n in sizes)} connections on one server")  # fmt: skip
        for label, keys, unit, fmt in resources:
            series = _series(records, part, keys)
            if unit == "KB":
                series = [v / 1024 for v in series]
            # one server: judged over the last step (the most connections; the first stage also carries what the
            # baseline did not absorb); the fleet: from one server to the most
            i = 0 if part == "fleet" else len(sizes) - 2
            grows = verdict(series[i], series[-1], sizes[-1] / sizes[i])
            step = (f"{sizes[-1]} / {sizes[i]} servers" if part == "fleet"
                    else f"{sizes[-1] / 1000:g}k / {sizes[i] / 1000:g}k")  # fmt: skip
            out.append(Row(f"growth: {label}, {what}", " / ".join(f"{v:{fmt}} {unit}" for v in series), "",
                           series[-1] / series[i], float("nan"), False, "(info)",
                           note=f"{grows}, {step}; see *How cost grows*"))  # fmt: skip
    return out


def _cpu_cells(records: list[dict[str, Any]], part: str, n: int) -> str:
    """``per message | per delivery`` cells of the section's table (HAProxy's share for the fleet)."""
    m = {k: median(records, part, k, **{_by(part): n}) for k in records_keys(part)}
    hap = part == "fleet"
    return (
        f"{m['server_us_per_message']:.0f} / {m['redis_us_per_message']:.0f}"
        + (f" / {m['haproxy_us_per_message']:.0f}" if hap else "")
        + f" | {m['server_us_per_delivery']:.1f} / {m['redis_us_per_delivery']:.1f}"
        + (f" / {m['haproxy_us_per_delivery']:.1f}" if hap else "")
    )


def _registry_line(records: list[dict[str, Any]]) -> str:
    """The registry's share of the fleet's costs, first and last fleet size, with its verdict ("" without it)."""
    sizes = stage_sizes(records, "fleet")
    if len(sizes) < 2:
        return ""
    parts = []
    for key, what in (("redis_us_per_message", "message"), ("redis_us_per_delivery", "delivery")):
        first, last = (median(records, "fleet", key, servers=n) for n in (sizes[0], sizes[-1]))
        parts.append(f"{first:.1f} -> {last:.1f} us per {what} ({verdict(first, last, sizes[-1] / sizes[0])})")
    return f" Redis, {sizes[0]} -> {sizes[-1]} servers: " + ", ".join(parts) + "."


def section(stored: dict[str, Any] | None) -> list[str]:
    """The *How cost grows* section of BENCHMARKS.md (empty without records)."""
    if not stored or not stored.get("records"):
        return []
    records, meta = stored["records"], stored.get("meta", {})
    runs = "; ".join(f"{part} {m.get('written_at', '?')}, {m.get('rounds', '?')} rounds"
                     for part, m in meta.items())  # fmt: skip
    gen = "; ".join(
        f"{part} messages {median(records, part, 'message_gen_cores'):.2f}, deliveries "
        f"{median(records, part, 'delivery_gen_cores'):.2f}"
        for part in ("server", "fleet") if part in meta
    )  # fmt: skip
    out = [
        "## How cost grows",
        "",
        f"`python -m bench.run --only growth` (parts: {runs}; medians; `bench/growth.py` has the method; servers "
        f"on one core, generator and Redis on the other). In a window {ACTIVE} connections are active, the rest "
        f"idle: messages = {MESSAGE_RATE:,.0f}/s exactly-once over {ACTIVE} connections, deliveries = "
        f"{PUBLISH_RATE:,.0f} publications/s to {TOPICS} topics of {ACTIVE // TOPICS} subscribers each. CPU in us "
        "per message or delivery, all-in (the idle connections' pings in the window included). Memory and idle "
        "CPU from a run with idle connections only (as scenario 3), the kernel's share of the server's sockets in "
        "brackets; idle = the server's CPU over one ping interval, in which each connection is pinged once. Load "
        f"generator CPU (medians, cores): {gen or 'not measured'}. The rows above name how a cost per unit "
        f"grows: flat (within {FLAT_MARGIN:.0%}), sub-linear, linear or worse than linear in the connections "
        "(over the last stage's step) or the servers (from one to the most)." + _registry_line(records),
        "",
        "| load | memory per connection: server + registry (kernel) | idle (cores) | per message: servers / Redis"
        " / HAProxy | per delivery: servers / Redis / HAProxy |",
        "|---|---|---|---|---|",
    ]
    server = stage_sizes(records, "server")
    memory = stage_sizes(records, "memory")
    for n in sorted(set(server) | set(memory)):
        mem, idle = "", ""
        if n in memory:
            m = {k: median(records, "memory", k, connections=n) for k in records_keys("memory")}
            mem = (f"{m['server_bytes_per_conn'] / 1024:.2f} + {m['redis_bytes_per_conn'] / 1024:.2f} KB "
                   f"({m['kernel_bytes_per_conn'] / 1024:.2f} KB)")  # fmt: skip
            with contextlib.suppress(ValueError):
                idle = f"{median(records, 'memory', 'ping_interval_server_cores', connections=n):.3f}"
        cpu = _cpu_cells(records, "server", n) if n in server else " | "
        out.append(f"| {n:,} connections, one server | {mem} | {idle} | {cpu} |")
    for n in stage_sizes(records, "fleet"):
        conns = median(records, "fleet", "connections", servers=n)
        out.append(f"| {conns:,.0f} connections, {n} server{'s' if n > 1 else ''} behind the twin | | | "
                   f"{_cpu_cells(records, 'fleet', n)} |")  # fmt: skip
    out.append("")
    return out


def records_keys(part: str) -> tuple[str, ...]:
    """The keys the section reads for ``part``."""
    if part == "memory":
        return ("server_bytes_per_conn", "redis_bytes_per_conn", "kernel_bytes_per_conn")
    keys = ("server_us_per_message", "redis_us_per_message", "server_us_per_delivery", "redis_us_per_delivery")
    return keys if part == "server" else (*keys, "haproxy_us_per_message", "haproxy_us_per_delivery")
