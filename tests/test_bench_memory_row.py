"""The in-memory registry's row of BENCHMARKS.md: which records it pairs, how it is judged, and how a run of
``python -m bench.run --only memory-echo`` replaces its part of the stored results."""

from __future__ import annotations

from typing import Any

from bench import report, variants


def _echo(peer: str, rates: list[float], gen: float = 0.3, **extra: Any) -> list[dict[str, Any]]:
    return [{"scenario": "echo", "peer": peer, "round": i, "rate_per_s": rate, "gen_cpu_cores": gen, **extra}
            for i, rate in enumerate(rates)]  # fmt: skip


def test_a_full_run_pairs_the_in_memory_registry_with_the_reference_server() -> None:
    """In a traffic stage the row is the median in-memory rate over the reference's, judged >= 1.0x."""
    traffic = _echo("reference", [9_000, 10_000, 11_000]) + _echo("reference-memory", [12_000, 9_500, 11_000])
    (row,) = report.memory_rows(traffic)
    assert (row.ratio, row.judged_by, row.target_text, row.passed) == (1.1, "echo_memory", ">= 1.0x", True)
    assert (row.reference, row.peer) == ("11,000 (gen 0.30 cores)", "10,000 (gen 0.30 cores)")


def test_a_run_of_its_own_pairs_its_own_redis_side_and_says_when() -> None:
    """Records of ``--only memory-echo`` are paired with each other, not with the traffic stage's reference."""
    when = {"measured_at": "2026-12-06 15:40 UTC"}
    traffic = (_echo("reference", [20_000]) + _echo("reference-memory", [9_000, 9_000], **when)
               + _echo("reference-redis", [10_000, 10_000], **when))  # fmt: skip
    (row,) = report.memory_rows(traffic)
    assert (row.ratio, row.passed) == (0.9, False)
    assert "2 alternated rounds, 2026-12-06 15:40 UTC" in row.note


def test_a_saturated_generator_makes_the_cells_lower_bounds() -> None:
    """A generator at 0.8 cores or more marks its cell ``at least`` and the ratio a bound."""
    traffic = _echo("reference", [10_000]) + _echo("reference-memory", [12_000], gen=0.85)
    (row,) = report.memory_rows(traffic)
    assert row.reference.startswith(report.AT_LEAST)
    assert "the ratio is a bound" in row.note


def test_a_run_without_the_in_memory_variant_has_no_row() -> None:
    """Stored runs from before the in-memory variant render without the row."""
    assert report.memory_rows(_echo("reference", [10_000])) == []


def test_merging_replaces_only_the_rows_records() -> None:
    """The merge swaps the in-memory pair's records and keeps every other record of the stored run."""
    stored = {"traffic": _echo("reference", [1.0]) + _echo("reference-memory", [2.0]) + _echo("node", [3.0])}
    new = _echo("reference-memory", [4.0]) + _echo("reference-redis", [5.0])
    merged = variants.merge_memory_echo(stored, new)
    assert [(r["peer"], r["rate_per_s"]) for r in merged["traffic"]] == [
        ("reference", 1.0), ("node", 3.0), ("reference-memory", 4.0), ("reference-redis", 5.0),
    ]  # fmt: skip
