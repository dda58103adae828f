"""The capacity table of docs/server.md against the stored results, and the arithmetic behind it.

The block between the markers is rendered by ``bench.capacity.capacity_markdown`` from
bench/results/last-run.json; the growth verdicts on BENCHMARKS.md come from ``bench.growth.verdict``.
"""

from __future__ import annotations

import json

import pytest

from bench import capacity, growth, run
from bench.capacity import UnitCosts, Workload


def costs(**changes: float) -> UnitCosts:
    """Round unit costs: 100 us a message, 10 us a delivery, 1 ms a handshake, 1 us/s an idle connection."""
    values: dict[str, float] = {
        "us_per_message": 100.0, "us_per_delivery": 10.0, "us_per_handshake": 1000.0,
        "cores_per_idle_connection": 1e-6, "server_bytes_per_connection": 2048.0,
        "kernel_bytes_per_connection": 2048.0, "baseline_rss_bytes": 0.0, "registry_bytes_per_connection": 300.0,
        "redis_us_per_message": 40.0, "redis_us_per_publication": 50.0, "redis_us_per_handshake": 45.0,
    }  # fmt: skip
    values.update(changes)
    return UnitCosts(**values, top_connections=19_500, measured_at="now", handshakes_at="then")


def test_server_doc_block_is_what_the_stored_results_render() -> None:
    """docs/server.md carries exactly the capacity block the stored results render."""
    stored = json.loads(run.RESULTS.read_text(encoding="utf-8"))
    text = capacity.DOC.read_text(encoding="utf-8")
    assert capacity.replace_block(text, capacity.capacity_markdown(stored)) == text, (
        "docs/server.md's capacity table differs from the results: `python -m bench.run --render-only` writes it"
    )


def test_replace_block_without_markers_says_where_the_table_goes() -> None:
    """A page without the markers is refused with a message naming them."""
    with pytest.raises(ValueError, match="capacity-table:start"):
        capacity.replace_block("# no markers\n", "table\n")


def test_fargate_memory_options_come_from_the_settings_rule() -> None:
    """The memory range of each task size is the one the fargate-task-size rule accepts."""
    assert capacity.memory_options_gib(0.25) == (0.5, 2.0)
    assert capacity.memory_options_gib(1.0) == (2.0, 8.0)
    assert capacity.memory_options_gib(4.0) == (8.0, 30.0)


def test_one_process_uses_one_core_so_more_vcpu_carries_no_more_work() -> None:
    """A 2 or 4 vCPU task carries the 1 vCPU task's rates; a 0.5 vCPU task half of them."""
    c = costs()
    one, two, half = (capacity.task_capacity(c, v, 0.6) for v in (1.0, 2.0, 0.5))
    assert one.messages_per_s == pytest.approx(6000.0)
    assert two.messages_per_s == one.messages_per_s
    assert half.deliveries_per_s == pytest.approx(one.deliveries_per_s / 2)
    assert one.handshakes_per_s == pytest.approx(600.0)
    assert one.connections_by_cpu == 600_000


def test_connections_by_memory_count_the_kernel_share_and_the_headroom() -> None:
    """1 GiB at 70 % over 4 KiB a connection (RSS + kernel) holds 183,500 connections."""
    assert capacity.connections_by_memory(costs(), 1.0) == int(0.7 * 1024**3 / 4096)


def test_alb_lcus_per_dimension() -> None:
    """3,000 connections renewed every 120 s cost 1 LCU of new and 1 of active connections; 10 rules are free."""
    w = Workload(3000, messages_per_connection_s=0.0, deliveries_per_connection_s=0.0, subscribers_per_publication=1,
                 connection_lifetime_s=120, rules=10)  # fmt: skip
    lcus = capacity.alb_lcus(w, ping_interval_s=30)
    assert lcus["new connections"] == pytest.approx(1.0)
    assert lcus["active connections"] == pytest.approx(1.0)
    assert lcus["processed bytes"] == pytest.approx(3000 * 12 / 30 * 3600 / 1e9)
    assert lcus["rule evaluations"] == 0.0
    busy = Workload(3000, messages_per_connection_s=0.0, deliveries_per_connection_s=1.0,
                    subscribers_per_publication=1, connection_lifetime_s=6, rules=12)  # fmt: skip
    lcus = capacity.alb_lcus(busy, ping_interval_s=30)
    assert lcus["rule evaluations"] == pytest.approx(500 * 2 / 1000)
    assert lcus["processed bytes"] == pytest.approx((3000 * 200 + 3000 * 12 / 30) * 3600 / 1e9)


def test_fleet_plan_takes_the_binding_resource() -> None:
    """A fleet is as many tasks as its CPU or its memory needs, whichever is more, rounded up."""
    idle = Workload(100_000, messages_per_connection_s=0.0, deliveries_per_connection_s=0.0,
                    subscribers_per_publication=1, connection_lifetime_s=1e9)  # fmt: skip
    plan = capacity.fleet_plan(costs(), idle, 1.0, 0.5, 0.6, 30.0)
    per_task = capacity.connections_by_memory(costs(), 0.5)
    assert (plan.tasks, plan.bound_by) == (-(-100_000 // per_task), "memory")
    busy = Workload(100_000, messages_per_connection_s=0.1, deliveries_per_connection_s=0.0,
                    subscribers_per_publication=1, connection_lifetime_s=1e9)  # fmt: skip
    plan = capacity.fleet_plan(costs(), busy, 1.0, 8.0, 0.6, 30.0)
    # 10,000 messages/s x 100 us = 1 core, + 0.1 core of pings, at 0.6 a task: 2 tasks
    assert (plan.tasks, plan.bound_by) == (2, "CPU")
    assert plan.cpu_cores == pytest.approx(1.1)
    assert plan.redis_cores == pytest.approx(10_000 * 40e-6)
    assert plan.registry_bytes == 100_000 * 300.0


@pytest.mark.parametrize(
    ("first", "last", "factor", "expected"),
    [
        (100.0, 120.0, 19.5, "flat"),
        (100.0, 80.0, 19.5, "flat"),
        (100.0, 300.0, 19.5, "sub-linear"),
        (100.0, 1950.0, 19.5, "linear"),
        (100.0, 3.0 * 100, 3, "linear"),
        (100.0, 100.0 * 19.5**2, 19.5, "worse than linear"),
    ],
)
def test_growth_verdict_names_the_slope(first: float, last: float, factor: float, expected: str) -> None:
    """A per-unit cost within 25 % is flat; beyond, its log-log slope against the work names its growth."""
    assert growth.verdict(first, last, factor) == expected


def test_growth_verdict_refuses_what_it_cannot_judge() -> None:
    """A zero cost or a work that did not grow has no verdict."""
    with pytest.raises(ValueError, match="positive costs"):
        growth.verdict(0.0, 1.0, 2.0)
    with pytest.raises(ValueError, match="factor above 1"):
        growth.verdict(1.0, 1.0, 1.0)


def test_growth_merge_keeps_the_part_not_run() -> None:
    """Running one part of the growth scenario replaces that part's records and keeps the other's."""
    old = {"records": [{"part": "server", "n": 1}, {"part": "fleet", "n": 2}], "meta": {"server": 1, "fleet": 2}}
    new = {"records": [{"part": "fleet", "n": 3}], "meta": {"fleet": 3}}
    assert growth.merge(old, new) == {
        "records": [{"part": "server", "n": 1}, {"part": "fleet", "n": 3}],
        "meta": {"server": 1, "fleet": 3},
    }
