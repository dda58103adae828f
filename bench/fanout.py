"""Scenarios 5-6: fan-out from a backend, the reference server against socket.io + its Redis adapter.

Both servers run side by side on the server core (one under load at a time); the Go generator
(``loadgen -mode fanout``), its publisher child and Redis share the other core. Per round and peer
(alternated A B, B A, ...): the generator opens ``subscribers`` connections, each subscribed to the
topic ``fan`` and to one of ``topics`` topics (``t-<i mod topics>``); then

* 5: ``reps`` publications to ``fan``, one at a time (each waits until every subscriber has it):
  deliveries/s = subscribers / (last receive - publish time), median over the reps;
* 6: ``rate`` publications/s for ``duration_s``, round robin over the topics (``subscribers / topics``
  each): deliveries per second of server CPU, publish-to-receive p50/p99.

Publishers: the reference server's is :mod:`bench.fanout_pub` (``stickyws.publish.Publisher``), the
socket.io peer's ``bench/socketio-peer/publish.js`` (``@socket.io/redis-emitter``). Both stamp the data
with the wall clock in microseconds just before publishing, the generator subtracts it on receipt.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from bench import generator as loadgen
from bench import peers
from bench.peers import BENCH_DIR, FANOUT_PEERS, Server
from bench.scenarios import Bench

#: Seconds one generator phase may take beyond its own bounds before it counts as hung.
PHASE_SLACK_S = 120.0


def publisher(peer: str, redis_url: str) -> list[str]:
    """The backend command that publishes for ``peer`` (started by the generator, on its core)."""
    if peer == "reference":
        return [sys.executable, "-m", "bench.fanout_pub", redis_url]
    return ["node", str(BENCH_DIR / "socketio-peer" / "publish.js"), redis_url]


def _order(round_no: int) -> tuple[str, ...]:
    return FANOUT_PEERS if round_no % 2 == 0 else tuple(reversed(FANOUT_PEERS))


def _phase(session: loadgen.FanoutSession, server: Server) -> dict[str, Any]:
    cpu0 = server.cpu_s()
    session.proceed()
    rep = session.report()
    rep["server_cpu_s"] = server.cpu_s() - cpu0
    rep["server_cpu_cores"] = rep["server_cpu_s"] / rep["wall_s"]
    return rep


def run_fanout(b: Bench, rounds: int, subscribers: int, topics: int, reps: int, rate: float, duration_s: float,
               say: Callable[[str], None]) -> list[dict[str, Any]]:  # fmt: skip
    """Scenarios 5 and 6 for both peers, ``rounds`` alternated rounds; one record per round, peer and scenario."""
    tokens = {"reference": b.tokens["reference"], "socketio": b.tokens["node"]}
    servers = {p: peers.start(p, settings=b.settings, secret=b.secret, redis_url=b.redis_url, core=b.server_core,
                              workdir=b.workdir, tag="fanout") for p in FANOUT_PEERS}  # fmt: skip
    records: list[dict[str, Any]] = []
    try:
        for r in range(rounds):
            for peer in _order(r):
                server = servers[peer]
                session = loadgen.FanoutSession(
                    server.url, tokens[peer], publisher(peer, b.redis_url), core=b.gen_core,
                    log_path=b.workdir / f"loadgen-fanout-{peer}-{r}.log",
                    client="stickyws" if peer == "reference" else "socketio", n=subscribers, topics=topics,
                    reps=reps, rate=rate, duration=duration_s, conc=200,
                )  # fmt: skip
                try:
                    ready = session.report()
                    if ready["open"] < subscribers:
                        raise loadgen.LoadgenError(
                            f"fanout {peer}: only {ready['open']} of {subscribers} subscribed ({ready['last_error']})"
                        )
                    one = _phase(session, server)
                    stream = _phase(session, server)
                    done = session.finish(timeout_s=60)
                finally:
                    session.kill()
                common = {"peer": peer, "round": r, "subscribers": ready["open"], "opened_in_s": ready["opened_in_s"],
                          "publisher_cpu_s": done["publisher_cpu_s"], "publisher": done.get("publisher")}  # fmt: skip
                one.update(common, scenario="fanout-one")
                stream.update(common, scenario="fanout-stream")
                stream["deliveries_per_core_s"] = stream["deliveries"] / max(stream["server_cpu_s"], 1e-9)
                for rec in (one, stream):
                    rec["server_us_per_delivery"] = rec["server_cpu_s"] * 1e6 / max(int(rec["deliveries"]), 1)
                records += [one, stream]
                say(
                    f"  round {r + 1} {peer:<9} one->{one['subscribers']:,}: {one['deliveries_per_s']:9,.0f} "
                    f"deliveries/s (fan-out {one['fanout_ms_median']:.0f} ms), p50 {one['p50_ms']:.1f} ms "
                    f"p99 {one['p99_ms']:.1f} ms, server {one['server_cpu_cores']:.2f} cores, generator "
                    f"{one['gen_cpu_cores']:.2f} cores ({one['gen_burst_cores']:.2f} in the bursts)"
                    + (f", {one['missing']} missing" if one["missing"] else "")
                )
                say(
                    f"  round {r + 1} {peer:<9} stream {stream['publications']:,} pubs -> {topics:,} topics: "
                    f"{stream['deliveries_per_s']:9,.0f} deliveries/s, {stream['deliveries_per_core_s']:9,.0f} per "
                    f"server core-s, p50 {stream['p50_ms']:.1f} ms p99 {stream['p99_ms']:.1f} ms, server "
                    f"{stream['server_cpu_cores']:.2f} cores, generator {stream['gen_cpu_cores']:.2f} cores, "
                    f"publisher {done['publisher_cpu_s']:.1f} cpu-s"
                    + (f" (publish call p99 {pubr['call_p99_ms']:.1f} ms)" if (pubr := done.get("publisher")) else "")
                    + ("" if stream["complete"] else f", {stream['expected'] - stream['deliveries']} missing")
                )
    finally:
        for server in servers.values():
            server.stop()
    return records


def _med(fan: list[dict[str, Any]], scenario: str, peer: str, key: str) -> float:
    values = sorted(float(r[key]) for r in fan if r["scenario"] == scenario and r["peer"] == peer)
    return values[len(values) // 2] if values else float("nan")


def method_lines(fan: list[dict[str, Any]], rounds: int) -> list[str]:
    """The Method bullets and the peer's section of BENCHMARKS.md for scenarios 5-6."""
    if not fan:
        return []
    one = next(r for r in fan if r["scenario"] == "fanout-one")
    stream = next(r for r in fan if r["scenario"] == "fanout-stream")
    subs, topics, rate = int(one["subscribers"]), int(stream["topics"]), float(stream["target_rate_per_s"])
    cpu = "; ".join(
        f"{s}: " + ", ".join(
            f"{p} generator {_med(fan, s, p, 'gen_cpu_cores'):.2f} / server {_med(fan, s, p, 'server_cpu_cores'):.2f}"
            for p in FANOUT_PEERS
        )
        for s in ("fanout-one", "fanout-stream")
    )  # fmt: skip
    burst = ", ".join(f"{p} {_med(fan, 'fanout-one', p, 'gen_burst_cores'):.2f}" for p in FANOUT_PEERS)
    pub = ", ".join(f"{p} {_med(fan, 'fanout-stream', p, 'publisher_cpu_s'):.1f} CPU-s" for p in FANOUT_PEERS)
    return [
        f"- Scenarios 5-6 (fan-out): {rounds} rounds, alternated; per round and peer the generator "
        f"(`loadgen -mode fanout`, `bench/loadgen/fanout.go`) opens {subs:,} connections (200 at a time, "
        f"distinct users), each subscribed to the topic `fan` and to one of {topics:,} topics "
        f"({subs // topics} subscribers each), and starts the peer's publisher as its child (on the "
        "generator core): `python -m bench.fanout_pub` (`stickyws.publish.Publisher`, 8 publishes in flight, "
        "the pool's size) for the reference server, `bench/socketio-peer/publish.js` "
        "(`@socket.io/redis-emitter`) for socket.io. The publisher stamps each publication with the wall clock "
        "(microseconds) just before publishing; the generator subtracts it on receipt (publish-to-receive). "
        f"Scenario 5: {one['reps']} publications to `fan`, one at a time, the next after every subscriber "
        "has the previous one; deliveries/s = subscribers / the median over the publications of (last receipt - "
        f"publish stamp), then the median over rounds. Scenario 6: {rate:,.0f} publications/s for "
        f"{stream['send_s']:.0f} s, round robin over the {topics:,} topics ({rate * subs / topics:,.0f} "
        "deliveries/s offered), then the deliveries in flight are awaited (bounded); judged by deliveries per "
        "second of server CPU (`/proc/PID/stat` over the phase), since both servers deliver about the offered "
        "rate. CPU in cores over each phase (medians): " + cpu + "; the generator's CPU while a scenario-5 "
        f"publication was in flight (from the publish to the last receipt): {burst} cores; publisher CPU per "
        f"session: {pub}. "
        "Redis, the generator and the publisher share one core (and the machine with other work): where "
        "the generator is near a full core the fan-out figures are lower bounds for both servers "
        '("at least" in the table).',
    ]


def peer_section() -> list[str]:
    """The socket.io peer, described for BENCHMARKS.md."""
    return [
        "## The socket.io peer (`bench/socketio-peer/`)",
        "",
        "The most used Node stack for pushing to rooms across servers: `socket.io` 4 with "
        "`@socket.io/redis-adapter` (`createAdapter(pub, sub)` on `ioredis`, the same Redis as the reference "
        "server), pinned by `package-lock.json` (`npm ci`). The websocket transport only "
        "(`transports: ['websocket']`, no long-polling upgrade), `perMessageDeflate` off (socket.io's "
        "default, as in the reference server), socket.io's own ping/pong. A middleware verifies the JWT of "
        "the CONNECT packet (HS256, `jsonwebtoken`, same secret and audience); a `subscribe` event joins "
        "the room named like the topic and acknowledges. The backend emits with `@socket.io/redis-emitter` "
        "(`emitter.to(topic).emit('publication', {topic, data})`); the adapter on the server receives it "
        "on Redis pub/sub and broadcasts to the room's local sockets (socket.io encodes the packet once per "
        "broadcast). The generator speaks engine.io 4 itself: `GET /socket.io/?EIO=4&transport=websocket`, "
        'the open packet `0{...}`, `40{"token":...}` and its `40` answer, `42<id>["subscribe",topic]` and '
        "its `43<id>` ack, `2` -> `3` pings.",
        "",
        "What the reference server does per publication that the peer does not: the publisher appends it to "
        "the topic's log (a Redis Stream with an offset and an epoch, trimmed to the retention) in the same "
        "atomic call that announces it, so a subscriber that reconnects gets what it missed; the socket.io "
        "peer's emitter is one PUBLISH, and a socket that is not connected at that moment never gets it.",
        "",
    ]
