"""Medians, ratios, targets, the BENCHMARKS.md page and the PNG chart of the ratios."""

from __future__ import annotations

import contextlib
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The targets (BENCHMARKS.md states each one with its row).
HANDSHAKE_MIN_RATIO = 1.2
#: Exactly-once echo against the Node peer that commits per message, at_most_once against plain Node.
ECHO_MIN_RATIO = 1.0
P99_MAX_RATIO = 1.0
IDLE_MAX_KB = 8.0
#: Generator CPU (cores) from which a rate is a lower bound (the generator may be what limits it).
GEN_SATURATED_CORES = 0.85
IDLE_TARGET_CONNS = 10_000
SYNTH_MAX_RATIO = 1.3
MAKE_TEST_MAX_S = 180.0
#: The fan-out targets: deliveries/s at least the socket.io peer's, p99 at most the peer's.
FANOUT_MIN_RATIO = 1.0
FANOUT_P99_MAX_RATIO = 1.0
#: Generator-core CPU (generator + publisher, cores) from which a fan-out reading is a lower bound.
GEN_SATURATED_CORES = 0.8


@dataclass(frozen=True)
class Row:
    """One line of the results table; ``ratio`` is what the chart plots against ``target``."""

    metric: str
    reference: str
    peer: str
    ratio: float
    target: float
    higher_is_better: bool
    target_text: str
    note: str = ""
    #: Label on the chart.
    short: str = ""

    @property
    def passed(self) -> bool:
        """Whether the ratio meets its target."""
        return self.ratio >= self.target if self.higher_is_better else self.ratio <= self.target

    @property
    def verdict(self) -> str:
        """PASS or FAIL."""
        return "PASS" if self.passed else "FAIL"


def median_of(records: list[dict[str, Any]], scenario: str, peer: str, key: str, **match: Any) -> float:
    """Median of ``key`` over the records of ``scenario`` and ``peer`` (and ``match``)."""
    values = [
        float(r[key]) for r in records
        if r["scenario"] == scenario and r["peer"] == peer and all(r.get(k) == v for k, v in match.items())
    ]  # fmt: skip
    if not values:
        raise ValueError(f"no {scenario}/{peer} records with {key}")
    return statistics.median(values)


def gen_core_load(records: list[dict[str, Any]], scenario: str, peer: str) -> float:
    """Median CPU of the load generator in ``scenario`` (cores): while publications were in flight
    (``gen_burst_cores``) where the generator reports it, else over the phase's wall time."""
    values = [
        float(r.get("gen_burst_cores", r["gen_cpu_cores"])) for r in records
        if r["scenario"] == scenario and r["peer"] == peer
    ]  # fmt: skip
    return statistics.median(values) if values else 0.0


def fanout_rows(fan: list[dict[str, Any]]) -> list[Row]:
    """Scenarios 5-6: the reference server against the socket.io peer."""
    out: list[Row] = []
    peers = ("reference", "socketio")
    subs = int(median_of(fan, "fanout-one", "reference", "subscribers"))
    one = next(r for r in fan if r["scenario"] == "fanout-one")
    stream = next(r for r in fan if r["scenario"] == "fanout-stream")
    short1 = f"1 -> {subs // 1000}k, reference / socket.io"
    sat = any(gen_core_load(fan, "fanout-one", p) >= GEN_SATURATED_CORES for p in peers)
    least = "at least " if sat else ""
    ref, sio = (median_of(fan, "fanout-one", p, "deliveries_per_s") for p in peers)
    out.append(Row(f"5. one publication to {subs:,} subscribers: deliveries/s (x{one['reps']})",
                   f"{least}{ref:,.0f}", f"{least}{sio:,.0f}", ref / sio, FANOUT_MIN_RATIO, True, ">= 1.0x",
                   note="socket.io peer", short=f"deliveries/s, {short1}"))  # fmt: skip
    for key, label in (("p50_ms", "p50"), ("p99_ms", "p99")):
        ref, sio = (median_of(fan, "fanout-one", p, key) for p in peers)
        judged = label == "p99"
        out.append(Row(f"5. publish-to-receive {label}, 1 -> {subs:,}", f"{ref:.1f} ms", f"{sio:.1f} ms",
                       ref / sio, FANOUT_P99_MAX_RATIO if judged else float("nan"), False,
                       "<= 1.0x" if judged else "(info)", short=f"p99, {short1}"))  # fmt: skip
    with contextlib.suppress(ValueError, KeyError, statistics.StatisticsError):
        ref, sio = (
            statistics.median(r["server_cpu_s"] * 1e6 / max(int(r["deliveries"]), 1) for r in fan
                              if r["scenario"] == "fanout-one" and r["peer"] == p)
            for p in peers
        )  # fmt: skip
        out.append(Row(f"5. server CPU per delivery, 1 -> {subs:,}", f"{ref:.1f} us", f"{sio:.1f} us", ref / sio,
                       float("nan"), False, "(info)"))  # fmt: skip
    topics, rate = int(stream["topics"]), float(stream["target_rate_per_s"])
    what = f"{rate:,.0f} pub/s to {topics:,} topics"
    ref, sio = (median_of(fan, "fanout-stream", p, "deliveries_per_core_s") for p in peers)
    rref, rsio = (median_of(fan, "fanout-stream", p, "deliveries_per_s") for p in peers)
    out.append(Row(f"6. {what}: deliveries per server core-s", f"{ref:,.0f} ({rref:,.0f}/s)",
                   f"{sio:,.0f} ({rsio:,.0f}/s)", ref / sio, FANOUT_MIN_RATIO, True, ">= 1.0x",
                   note="socket.io peer", short="deliveries per core-s, stream, reference / socket.io"))  # fmt: skip
    for key, label in (("p50_ms", "p50"), ("p99_ms", "p99")):
        ref, sio = (median_of(fan, "fanout-stream", p, key) for p in peers)
        judged = label == "p99"
        out.append(Row(f"6. publish-to-receive {label}, {what}", f"{ref:.1f} ms", f"{sio:.1f} ms", ref / sio,
                       FANOUT_P99_MAX_RATIO if judged else float("nan"), False, "<= 1.0x" if judged else "(info)",
                       short="p99, stream, reference / socket.io"))  # fmt: skip
    return out


def rows(traffic: list[dict[str, Any]], idle: list[dict[str, Any]], storm: dict[str, Any] | None,
         synth: dict[str, Any] | None, test: dict[str, Any] | None,
         fan: list[dict[str, Any]] | None = None) -> list[Row]:  # fmt: skip
    """The results table."""
    out: list[Row] = []
    if traffic:

        def rate(scenario: str, peer: str) -> tuple[float, str]:
            value = median_of(traffic, scenario, peer, "rate_per_s")
            gen = median_of(traffic, scenario, peer, "gen_cpu_cores")
            low = ">= " if gen >= GEN_SATURATED_CORES else ""
            return value, f"{low}{value:,.0f} (gen {gen:.2f} cores)"

        ref, ref_text = rate("handshake", "reference")
        node, node_text = rate("handshake", "node")
        out.append(Row("1. handshakes/s (auth + registry, 100 concurrent)", ref_text, node_text, ref / node,
                       HANDSHAKE_MIN_RATIO, True, ">= 1.2x", short="handshakes/s, reference / Node"))  # fmt: skip
        pairs = (
            ("2. echo round trips/s, exactly once (vs Node ws + ioredis, one Lua commit per message)", "reference",
             "node-commit", "echo exactly once / Node commit"),
            ("2. echo round trips/s, inbound_delivery=at_most_once (vs plain Node ws)", "reference-amo", "node",
             "echo at_most_once / plain Node"),
        )  # fmt: skip
        if not any(r["peer"] == "node-commit" for r in traffic):  # a run from before the committing peer
            pairs = (("2. echo round trips/s, exactly once (vs plain Node: this run had no committing peer)",
                      "reference", "node", "echo exactly once / plain Node"),)  # fmt: skip
        for metric, mine, theirs, short in pairs:
            with contextlib.suppress(ValueError):  # a run without that variant
                a, a_text = rate("echo", mine)
                c, c_text = rate("echo", theirs)
                note = "generator near saturation: the ratio is a bound" if ">=" in a_text + c_text else ""
                out.append(Row(metric, a_text, c_text, a / c, ECHO_MIN_RATIO, True, ">= 1.0x", note=note,
                               short=short))  # fmt: skip
        rate_target = traffic[-1].get("target_rate_per_s", 0)
        peer = (
            "node-commit" if any(r["peer"] == "node-commit" and r["scenario"] == "latency" for r in traffic) else "node"
        )
        for key, label in (("p50_ms", "p50"), ("p99_ms", "p99")):
            ref, node = (median_of(traffic, "latency", p, key) for p in ("reference", peer))
            plain = median_of(traffic, "latency", "node", key)
            note = f"plain Node {plain:.2f} ms" if peer != "node" else ""
            if label == "p99":
                out.append(Row(f"2. echo {label} latency at {rate_target:,.0f} msg/s (vs {peer})", f"{ref:.2f} ms",
                               f"{node:.2f} ms", ref / node, P99_MAX_RATIO, False, "<= 1.0x", note=note,
                               short=f"echo p99 at {rate_target:,.0f} msg/s, reference / Node"))  # fmt: skip
            else:
                out.append(Row(f"2. echo {label} latency at {rate_target:,.0f} msg/s (vs {peer})", f"{ref:.2f} ms",
                               f"{node:.2f} ms", ref / node, float("nan"), False, "(info)", note=note))  # fmt: skip
    if idle:
        for n in sorted({int(r["connections"]) for r in idle}):
            kb: dict[str, float] = {}
            for p in ("reference", "node"):
                server = median_of(idle, "idle", p, "server_bytes_per_conn", connections=n) / 1024
                registry = median_of(idle, "idle", p, "redis_bytes_per_conn", connections=n) / 1024
                kb[p] = server + registry
                kb[p + "_server"] = server
                kb[p + "_registry"] = registry
            text = {p: f"{kb[p]:.1f} KB ({kb[p + '_server']:.1f} + {kb[p + '_registry']:.2f})" for p in
                    ("reference", "node")}  # fmt: skip
            if n == IDLE_TARGET_CONNS:
                out.append(Row(f"3. memory per idle connection at {n:,}", text["reference"], text["node"],
                               kb["reference"] / IDLE_MAX_KB, 1.0, False, "<= 8 KB",
                               note=f"ratio to Node {kb['reference'] / kb['node']:.2f}x",
                               short=f"KB per idle connection at {n // 1000}k / 8 KB"))  # fmt: skip
            else:
                out.append(Row(f"3. memory per idle connection at {n:,}", text["reference"], text["node"],
                               kb["reference"] / kb["node"], float("nan"), False, "(info)",
                               note=f"ratio to Node {kb['reference'] / kb['node']:.2f}x"))  # fmt: skip
    if storm is not None:
        ok_lost = storm["lost"] == 0
        out.append(Row(
            f"4. reconnect storm: {storm['moved']:,} of {storm['clients']:,} clients back and resumed",
            f"{storm['all_back_s']:.1f} s, {storm['lost']} lost", "no drain/resume",
            storm["all_back_s"] / storm["target_s"] if ok_lost else float("inf"), 1.0, False,
            f"<= {storm['target_s']:g} s, 0 lost",
            note=f"peak {storm['peak_handshakes_per_s']:.0f} handshakes/s on the survivors",
            short="storm: time until all back / target",
        ))  # fmt: skip
    if fan:
        out += fanout_rows(fan)
    if synth is not None:
        out.append(Row("synth: `make synth` vs minimal pattern app", f"{synth['project_s']:.1f} s",
                       f"{synth['minimal_s']:.1f} s (minimal)", synth["ratio"], SYNTH_MAX_RATIO, False,
                       "<= 1.3x", short="make synth / minimal pattern app"))  # fmt: skip
    if test is not None:
        out.append(Row("`make test` wall time", f"{test['wall_s']:.0f} s", "", test["wall_s"] / MAKE_TEST_MAX_S,
                       1.0, False, "<= 180 s", note=test["source"], short="make test / 180 s"))  # fmt: skip
    return out


def verdict_lines(rs: list[Row]) -> list[str]:
    """One ``PASS``/``FAIL`` line per judged row: what was measured, against what, the ratio and the target."""
    out = []
    for r in rs:
        if r.target != r.target:
            continue
        ratio = f"{r.ratio:.2f}x" if r.ratio != float("inf") else "inf"
        note = f"; {r.note}" if r.note else ""
        out.append(f"{r.verdict} {r.metric}: {r.reference} vs {r.peer or '-'}, ratio {ratio} (target "
                   f"{r.target_text}{note})")  # fmt: skip
    return out


def table(rs: list[Row]) -> str:
    """The results as a Markdown table."""
    lines = [
        "| scenario | reference (stickyws) | Node peer (5-6: socket.io) | ratio | target | result |",
        "|---|---|---|---|---|---|",
    ]
    for r in rs:
        verdict = r.verdict if r.target == r.target else ""
        ratio = f"{r.ratio:.2f}" if r.ratio != float("inf") else "inf"
        if r.metric.startswith(("3.", "4.", "`make test`")):
            ratio += " of target" if r.target == r.target else ""
        note = f" ({r.note})" if r.note else ""
        lines.append(f"| {r.metric} | {r.reference} | {r.peer} | {ratio}{note} | {r.target_text} | {verdict} |")
    return "\n".join(lines)


def chart(rs: list[Row], path: Path) -> None:
    """A small horizontal bar chart: each judged ratio against its target (green PASS, red FAIL)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    judged = [r for r in rs if r.target == r.target]
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(judged) + 1.0), dpi=80)
    labels, values = [], []
    for i, r in enumerate(judged):
        value = min(r.ratio, 3.0)
        labels.append(f"{r.short or r.metric[:40]} ({r.target_text})")
        values.append(value)
        ax.barh(i, value, color="#3a8f3a" if r.passed else "#c0392b")
        ax.plot([r.target, r.target], [i - 0.4, i + 0.4], color="black", linewidth=2)
        ax.text(value + 0.03, i, f"{r.ratio:.2f}" + (" >" if r.ratio > 3.0 else ""), va="center", fontsize=8)
    ax.set_yticks(range(len(judged)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 3.3)
    ax.set_xlabel("ratio; black tick: target (green PASS, red FAIL)", fontsize=8)
    ax.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
