"""The capacity table of docs/server.md, derived from the stored benchmark results (``bench/results/last-run.json``).

:func:`unit_costs` reads what one unit of work cost on the benchmark machine (CPU per message, delivery,
handshake and idle connection; memory per connection; the registry's bytes and CPU); :func:`task_capacity`
turns them into what one Fargate task of each size carries at the planned headroom; :func:`fleet_plan` sizes
a fleet and its ALB for a stated workload; :func:`capacity_markdown` renders all of it, and
:func:`replace_block` puts it between the markers of docs/server.md (``python -m bench.run --render-only``
does; tests/test_capacity_doc.py holds the page to the results).

Assumptions, named on the page too: one server process per task, and it uses one core (a task's vCPU
beyond 1 is not used by it); a vCPU of Fargate does what one core of the benchmark machine did; CPU is
planned at the autoscaling target ``target_cpu_percent`` and memory at ``MEMORY_SHARE`` of the task's.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import growth
from stickyws.settings import Settings
from stickyws.settings.rules.service import _FARGATE_MEMORY

#: The Fargate task sizes of the table (vCPU), their CPU units and memory options come from the settings' rule.
TASK_VCPUS = (0.25, 0.5, 1.0, 2.0, 4.0)
#: Share of a task's memory planned for connections (the rest: the runtime's own growth, GC, bursts).
MEMORY_SHARE = 0.7
#: Cores one server process uses.
CORES_PER_PROCESS = 1.0
GIB = 1024**3
#: ALB LCU dimensions (Elastic Load Balancing pricing): per LCU, the most of each an hour is billed by.
LCU_NEW_CONNECTIONS_PER_S = 25.0
LCU_ACTIVE_CONNECTIONS = 3000.0
LCU_GB_PER_HOUR = 1.0
LCU_RULE_EVALUATIONS_PER_S = 1000.0
#: Rules an ALB evaluates per request free of charge.
LCU_FREE_RULES = 10

#: The page that carries the table, and the markers around the generated block in it.
DOC = Path(__file__).resolve().parents[1] / "docs" / "server.md"
START, END = "<!-- capacity-table:start -->", "<!-- capacity-table:end -->"


@dataclass(frozen=True)
class UnitCosts:
    """What one unit of work cost on the benchmark machine's core (the most over the growth stages)."""

    us_per_message: float
    us_per_delivery: float
    us_per_handshake: float
    #: Server cores per idle connection (its pings), over one ping interval at the largest stage.
    cores_per_idle_connection: float
    server_bytes_per_connection: float
    #: The kernel's memory for the server's end of a connection (socket, epoll item, file), charged to the task.
    kernel_bytes_per_connection: float
    #: The server's RSS with the baseline's few connections (the runtime itself).
    baseline_rss_bytes: float
    registry_bytes_per_connection: float
    redis_us_per_message: float
    redis_us_per_publication: float
    #: Redis CPU per handshake (the registry-shards scenario on one redis-server), NaN when not measured.
    redis_us_per_handshake: float
    top_connections: int
    measured_at: str
    #: When scenario 1 (the handshakes) ran.
    handshakes_at: str

    @property
    def bytes_per_connection(self) -> float:
        """A task's memory per connection: the server's RSS and the kernel's share."""
        return self.server_bytes_per_connection + self.kernel_bytes_per_connection


def _stage_max(records: list[dict[str, Any]], part: str, key: str) -> float:
    """The most over the stages of ``part`` of the median of ``key``."""
    return max(growth.median(records, part, key, connections=n) for n in growth.stage_sizes(records, part))


def unit_costs(stored: dict[str, Any]) -> UnitCosts:
    """The unit costs from one run's stored results (the growth scenario's server part and scenario 1)."""
    g = stored.get("growth") or {}
    records = g.get("records") or []
    missing = {"server", "memory"} - {r["part"] for r in records}
    if missing:
        raise ValueError(f"no growth results of the {' and '.join(sorted(missing))} part: run "
                         "`python -m bench.run --only growth` first")  # fmt: skip
    top = growth.stage_sizes(records, "memory")[-1]
    hs = [r["server_cpu_cores"] / r["rate_per_s"] * 1e6 for r in stored.get("traffic") or []
          if r["scenario"] == "handshake" and r["peer"] == "reference"]  # fmt: skip
    if not hs:
        raise ValueError("no handshake results (scenario 1): run make bench first")
    shard = [r["redis_cpu_us_per_op"] for r in stored.get("shards") or []
             if r["scenario"] == "handshake" and r["registry"] == "one redis-server"]  # fmt: skip
    return UnitCosts(
        us_per_message=_stage_max(records, "server", "server_us_per_message"),
        us_per_delivery=_stage_max(records, "server", "server_us_per_delivery"),
        us_per_handshake=statistics.median(hs),
        cores_per_idle_connection=growth.median(records, "memory", "ping_interval_server_cores", connections=top) / top,
        server_bytes_per_connection=_stage_max(records, "memory", "server_bytes_per_conn"),
        kernel_bytes_per_connection=max(0.0, _stage_max(records, "memory", "kernel_bytes_per_conn")),
        baseline_rss_bytes=growth.median(records, "memory", "baseline_rss_bytes"),
        registry_bytes_per_connection=_stage_max(records, "memory", "redis_bytes_per_conn"),
        redis_us_per_message=_stage_max(records, "server", "redis_us_per_message"),
        redis_us_per_publication=_stage_max(records, "server", "redis_us_per_publication"),
        redis_us_per_handshake=statistics.median(shard) if shard else float("nan"),
        top_connections=top,
        handshakes_at=str(stored.get("stage_runs", {}).get("traffic", stored.get("written_at", "?"))),
        measured_at=", ".join(
            f"{part} {m.get('written_at', '?')}"
            for part, m in g.get("meta", {}).items()
            if part in ("server", "memory")
        ),
    )


def headroom(settings: Settings | None = None) -> float:
    """The share of a core planned for: the autoscaling CPU target (``target_cpu_percent``)."""
    return float((settings or Settings())["target_cpu_percent"]) / 100


def memory_options_gib(vcpu: float) -> tuple[float, float]:
    """The lowest and highest memory (GiB) Fargate allows with ``vcpu``."""
    ranges = _FARGATE_MEMORY[round(vcpu * 1024)]
    return min(lo for lo, _, _ in ranges) / 1024, max(hi for _, hi, _ in ranges) / 1024


def connections_by_memory(c: UnitCosts, memory_gib: float) -> int:
    """Connections one task holds in ``MEMORY_SHARE`` of ``memory_gib`` (the runtime's baseline taken off)."""
    return max(0, int((memory_gib * GIB * MEMORY_SHARE - c.baseline_rss_bytes) / c.bytes_per_connection))


@dataclass(frozen=True)
class TaskCapacity:
    """One Fargate task size at the planned headroom, each kind of work alone."""

    vcpu: float
    memory_gib: tuple[float, float]
    #: Connections by memory at the lowest and the highest memory option; by the idle connections' CPU.
    connections_by_memory: tuple[int, int]
    connections_by_cpu: int
    messages_per_s: float
    deliveries_per_s: float
    handshakes_per_s: float


def task_capacity(c: UnitCosts, vcpu: float, cpu_share: float) -> TaskCapacity:
    """What a task of ``vcpu`` carries with its server at ``cpu_share`` of the cores it uses."""
    cores = min(vcpu, CORES_PER_PROCESS) * cpu_share
    lo, hi = memory_options_gib(vcpu)
    return TaskCapacity(
        vcpu=vcpu,
        memory_gib=(lo, hi),
        connections_by_memory=(connections_by_memory(c, lo), connections_by_memory(c, hi)),
        connections_by_cpu=int(cores / c.cores_per_idle_connection) if c.cores_per_idle_connection > 0 else 0,
        messages_per_s=cores * 1e6 / c.us_per_message,
        deliveries_per_s=cores * 1e6 / c.us_per_delivery,
        handshakes_per_s=cores * 1e6 / c.us_per_handshake,
    )


@dataclass(frozen=True)
class Workload:
    """A fleet's load on paper: its connections and what each does per second on average."""

    connections: int
    messages_per_connection_s: float
    deliveries_per_connection_s: float
    #: Subscribers each publication reaches (deliveries / publications).
    subscribers_per_publication: float
    #: Seconds a connection lives before it reconnects (handshakes/s = connections / this).
    connection_lifetime_s: float
    #: Bytes of one frame on the wire (a message, its ack, a delivery), WebSocket header included.
    frame_bytes: int = 200
    #: Listener rules the ALB evaluates for each upgrade request.
    rules: int = 1

    @property
    def handshakes_per_s(self) -> float:
        return self.connections / self.connection_lifetime_s

    @property
    def messages_per_s(self) -> float:
        return self.connections * self.messages_per_connection_s

    @property
    def deliveries_per_s(self) -> float:
        return self.connections * self.deliveries_per_connection_s


def alb_lcus(w: Workload, ping_interval_s: float) -> dict[str, float]:
    """LCUs per dimension for ``w`` (an ALB is billed by the largest): new connections, active connections,
    processed bytes (messages and their acks, deliveries, pings and pongs of about 6 bytes each way),
    rule evaluations beyond the free ones (one evaluation per rule per upgrade request)."""
    frames_per_s = 2 * w.messages_per_s + w.deliveries_per_s
    bytes_per_s = frames_per_s * w.frame_bytes + w.connections * 12 / ping_interval_s
    return {
        "new connections": w.handshakes_per_s / LCU_NEW_CONNECTIONS_PER_S,
        "active connections": w.connections / LCU_ACTIVE_CONNECTIONS,
        "processed bytes": bytes_per_s * 3600 / 1e9 / LCU_GB_PER_HOUR,
        "rule evaluations": w.handshakes_per_s * max(0, w.rules - LCU_FREE_RULES) / LCU_RULE_EVALUATIONS_PER_S,
    }


@dataclass(frozen=True)
class FleetPlan:
    """Tasks, registry and ALB for a workload on one task size."""

    tasks: int
    #: What sets the task count: ``memory`` or ``CPU``.
    bound_by: str
    cpu_cores: float
    registry_bytes: float
    redis_cores: float
    lcus: dict[str, float]


def fleet_plan(c: UnitCosts, w: Workload, vcpu: float, memory_gib: float, cpu_share: float,
               ping_interval_s: float) -> FleetPlan:  # fmt: skip
    """Size a fleet of tasks of ``vcpu`` / ``memory_gib`` for ``w``, the servers at ``cpu_share``."""
    cpu = (
        w.connections * c.cores_per_idle_connection
        + (w.messages_per_s * c.us_per_message + w.deliveries_per_s * c.us_per_delivery
           + w.handshakes_per_s * c.us_per_handshake) / 1e6
    )  # fmt: skip
    by_cpu = cpu / (min(vcpu, CORES_PER_PROCESS) * cpu_share)
    by_memory = w.connections / max(connections_by_memory(c, memory_gib), 1)
    publications = w.deliveries_per_s / w.subscribers_per_publication
    redis_hs = 0.0 if math.isnan(c.redis_us_per_handshake) else c.redis_us_per_handshake
    return FleetPlan(
        tasks=max(1, math.ceil(max(by_cpu, by_memory))),
        bound_by="CPU" if by_cpu >= by_memory else "memory",
        cpu_cores=cpu,
        registry_bytes=w.connections * c.registry_bytes_per_connection,
        redis_cores=(
            w.messages_per_s * c.redis_us_per_message
            + publications * c.redis_us_per_publication
            + w.handshakes_per_s * redis_hs
        )
        / 1e6,
        lcus=alb_lcus(w, ping_interval_s),
    )


#: The workloads the page sizes on paper: what every connection does on average.
EXAMPLES = (
    Workload(100_000, messages_per_connection_s=1 / 60, deliveries_per_connection_s=0.1,
             subscribers_per_publication=100, connection_lifetime_s=3600),
    Workload(1_000_000, messages_per_connection_s=1 / 60, deliveries_per_connection_s=0.1,
             subscribers_per_publication=100, connection_lifetime_s=3600),
)  # fmt: skip
#: The task size the examples use: one vCPU is all one server process uses.
EXAMPLE_TASK = (1.0, 2.0)


def _n(value: float) -> str:
    return f"{value:,.0f}"


def capacity_markdown(stored: dict[str, Any], settings: Settings | None = None) -> str:
    """The capacity section's generated block: unit costs, task sizes, two fleets on paper (Markdown)."""
    settings = settings or Settings()
    c = unit_costs(stored)
    share = headroom(settings)
    ping = float(settings["ping_interval_s"] or 0) or float("inf")
    redis_hs = "not measured" if math.isnan(c.redis_us_per_handshake) else f"{c.redis_us_per_handshake:.0f} us"
    out = [
        f"Measured by `python -m bench.run --only growth` ({c.measured_at}) and `make bench` (handshakes, "
        f"{c.handshakes_at}) on one core of the 2-core benchmark machine; the most over the stages up to "
        f"{c.top_connections:,} connections (*How cost grows* in [BENCHMARKS.md](../BENCHMARKS.md)). Assumptions: "
        "one server process per task, "
        "using one core (vCPU beyond 1 adds nothing to it); a Fargate vCPU does what that core did; CPU planned "
        f"at {share:.0%} of the core (`target_cpu_percent`), memory at {MEMORY_SHARE:.0%} of the task's less the "
        f"runtime's own {c.baseline_rss_bytes / 2**20:.0f} MiB; messages exactly-once; frames of about 200 bytes.",
        "",
        "| unit of work | server CPU | server memory | registry (Redis) |",
        "|---|---|---|---|",
        f"| idle connection | {c.cores_per_idle_connection * 1e6:.2f} us per second (pings every "
        f"{settings['ping_interval_s']:g} s) | {c.server_bytes_per_connection / 1024:.2f} KB RSS + "
        f"{c.kernel_bytes_per_connection / 1024:.2f} KB kernel | "
        f"{c.registry_bytes_per_connection / 1024:.2f} KB |",
        f"| message (exactly-once, with its ack) | {c.us_per_message:.0f} us | | {c.redis_us_per_message:.0f} us |",
        f"| delivery (one subscriber of a publication) | {c.us_per_delivery:.1f} us | | "
        f"{c.redis_us_per_publication:.0f} us per publication |",
        f"| handshake (JWT, registry, `connected` frame; with its close) | {c.us_per_handshake:.0f} us | | "
        f"{redis_hs} |",
        "",
        f"Per Fargate task size, each kind of work alone at {share:.0%} CPU (mix them by adding the shares of a "
        "task each takes). Connections by memory are at the lowest and the highest memory option; by CPU, the "
        "idle connections' pings alone. Per GB: "
        f"{_n(GIB * MEMORY_SHARE / c.bytes_per_connection)} connections; per vCPU: the 1 vCPU row.",
        "",
        "| task vCPU | memory (GB) | connections by memory | connections by CPU | messages/s | deliveries/s | "
        "handshakes/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for vcpu in TASK_VCPUS:
        t = task_capacity(c, vcpu, share)
        out.append(
            f"| {vcpu:g} | {t.memory_gib[0]:g}-{t.memory_gib[1]:g} | {_n(t.connections_by_memory[0])}-"
            f"{_n(t.connections_by_memory[1])} | {_n(t.connections_by_cpu)} | {_n(t.messages_per_s)} | "
            f"{_n(t.deliveries_per_s)} | {_n(t.handshakes_per_s)} |"
        )
    vcpu, mem = EXAMPLE_TASK
    out += [
        "",
        f"Two fleets on paper, on tasks of {vcpu:g} vCPU / {mem:g} GB: every connection sends "
        f"{EXAMPLES[0].messages_per_connection_s * 60:g} message a minute, receives "
        f"{EXAMPLES[0].deliveries_per_connection_s:g} deliveries a second (publications to "
        f"{EXAMPLES[0].subscribers_per_publication:g} subscribers) and reconnects once every "
        f"{EXAMPLES[0].connection_lifetime_s / 3600:g} hour (deploy waves come on top: see `migration_pace_per_s`); "
        f"ALB LCUs per dimension (25 new connections/s, 3,000 active connections, 1 GB/hour, 1,000 rule "
        f"evaluations/s each; billed by the largest), with {EXAMPLES[0].rules} listener rule.",
        "",
        "| connections | tasks (bound by) | server cores | registry memory | Redis CPU (cores) | ALB LCUs: new "
        "connections / active connections / bytes / rules |",
        "|---|---|---|---|---|---|",
    ]
    plans = [fleet_plan(c, w, vcpu, mem, share, ping) for w in EXAMPLES]
    big, pace = EXAMPLES[-1], float(settings["drain_pace_per_s"])
    for w, p in zip(EXAMPLES, plans, strict=True):
        lcu = p.lcus
        out.append(
            f"| {w.connections:,} | {p.tasks:,} ({p.bound_by}) | {p.cpu_cores:.1f} | "
            f"{p.registry_bytes / GIB:.2f} GiB | {p.redis_cores:.2f} | "
            + " / ".join(f"{lcu[k]:.1f}" for k in ("new connections", "active connections", "processed bytes",
                                                    "rule evaluations"))
            + " |"
        )  # fmt: skip
    out += [
        "",
        "`max_connections` (default 10,000) and the container's open-file limit bound a task's connections "
        "too: raise both to use the memory a size gives. The task counts are floors: a task per availability "
        "zone comes first, and the more a task holds, the longer its drain (it moves its connections at "
        f"`drain_pace_per_s`, {pace:g}/s by default: the {big.connections:,}-connection fleet's "
        f"{big.connections // plans[-1].tasks:,} a task take {big.connections / plans[-1].tasks / pace:,.0f} s) "
        "and the larger the reconnect wave the other tasks take when one stops.",
    ]
    return "\n".join(out) + "\n"


def replace_block(document: str, block: str) -> str:
    """``document`` with the text between ``START`` and ``END`` replaced by ``block``."""
    head, sep, rest = document.partition(START)
    if not sep or END not in rest:
        raise ValueError(f"markers {START} ... {END} not found: put them where the capacity table goes")
    _, _, tail = rest.partition(END)
    return f"{head}{START}\n{block}{END}{tail}"


def write_doc(stored: dict[str, Any]) -> None:
    """Write the block of ``DOC`` from ``stored`` (``ValueError`` when the results or the markers are missing)."""
    DOC.write_text(replace_block(DOC.read_text(), capacity_markdown(stored)))
