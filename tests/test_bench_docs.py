"""BENCHMARKS.md and bench/findings.md against their generator and the targets of bench/report.py.

BENCHMARKS.md is rendered from the last run's stored results (bench/results/last-run.json); the targets are
``bench.report.TARGETS``. These tests keep both pages from drifting: from their generator, and from the targets.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from bench import report, run, storm

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "BENCHMARKS.md"
FINDINGS = ROOT / "bench" / "findings.md"
#: The longest BENCHMARKS.md may be: a report, not a notebook (the history lives in bench/findings.md).
MAX_PAGE_LINES = 160

#: A number with the unit of a target: ``1.2x``, ``8 KB``, ``180 s``.
_VALUE = r"(?P<value>\d+(?:\.\d+)?)\s?(?P<unit>x|KB|s)\b"
#: "target >= 1.2x", "(target <= 180 s)", "target 0.8x", "goal of 16 KB", "target at most 1.5x".
_AFTER = re.compile(
    r"\b(?:targets?|goals?)\b:?\s*(?:of\s+|is\s+|was\s+)?(?:<=|>=|at most\s+|at least\s+)?\s*" + _VALUE, re.I
)
#: "the 8 KB target", "the 1.2x goal".
_BEFORE = re.compile(_VALUE + r"\s+(?:targets?|goals?)\b", re.I)


def stated_targets(text: str) -> list[tuple[float, str]]:
    """Every target that ``text`` states as a number, as (value, unit)."""
    found = [*_AFTER.finditer(text), *_BEFORE.finditer(text)]
    return [(float(m["value"]), m["unit"]) for m in sorted(found, key=lambda m: m.start())]


def storm_bound_s() -> float:
    """The storm's time bound in seconds with the settings it runs with."""
    return float(storm.STORM_OVERRIDES["drain_window_s"]) + float(storm.STORM_OVERRIDES["reconnect_cap_s"])


def allowed_targets() -> set[tuple[float, str]]:
    """The (value, unit) pairs report.py's targets allow a page to state."""
    pairs = {(t.bound, t.unit) for t in report.TARGETS.values() if not t.named}
    return pairs | {(storm_bound_s(), "s")}


@pytest.fixture(scope="module")
def stored() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(run.RESULTS.read_text(encoding="utf-8"))
    return loaded


def test_benchmarks_page_is_short() -> None:
    """BENCHMARKS.md is a report of at most 160 lines."""
    lines = BENCHMARKS.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_PAGE_LINES, f"BENCHMARKS.md has {len(lines)} lines"


def test_benchmarks_page_is_what_the_last_run_renders(stored: dict[str, Any]) -> None:
    """Rendering the stored last run reproduces the checked-in BENCHMARKS.md exactly."""
    assert run.render(stored) == BENCHMARKS.read_text(encoding="utf-8"), (
        "BENCHMARKS.md differs from its rendering: `python -m bench.run --render-only` writes it again"
    )


def test_findings_targets_table_is_rendered_from_report() -> None:
    """The targets table of bench/findings.md is the one report.py renders from TARGETS."""
    text = FINDINGS.read_text(encoding="utf-8")
    table = report.targets_table()
    assert report.replace_targets_table(text) == text
    assert table in text
    assert len(table.splitlines()) == len(report.TARGETS) + 2


def test_target_extraction_finds_every_way_a_target_is_stated() -> None:
    """The checker below reads targets stated before or after the word, with or without a comparison."""
    text = (
        "### Echo throughput (target 0.8x) and p99 latency (target 1.5x)\n"
        "Memory (target <= 16 KB at 10k). The 8 KB goal; the 1.2x target; (target >= 1.0x; plain Node).\n"
        "Not targets: target_rate_per_s 1000, 1.36x on the target line, the targets passed (1.02x)."
    )
    assert stated_targets(text) == [(0.8, "x"), (1.5, "x"), (16.0, "KB"), (8.0, "KB"), (1.2, "x"), (1.0, "x")]


@pytest.mark.parametrize("page", [BENCHMARKS, FINDINGS], ids=lambda p: p.name)
def test_every_target_a_page_states_is_reports(page: Path) -> None:
    """Every target BENCHMARKS.md and bench/findings.md state as a number is one of report.py's TARGETS."""
    stated = stated_targets(page.read_text(encoding="utf-8"))
    wrong = [pair for pair in stated if pair not in allowed_targets()]
    assert wrong == [], f"{page.name} states targets that bench/report.py does not have: {wrong}"


def test_findings_states_targets_that_the_check_reads() -> None:
    """bench/findings.md states targets in prose, so the check above is not vacuous there."""
    assert len(stated_targets(FINDINGS.read_text(encoding="utf-8"))) >= 3


def test_every_judged_row_carries_its_target(stored: dict[str, Any]) -> None:
    """Every judged row of the last run is judged by the bound and the text of its entry in TARGETS."""
    rows = run.result_rows(stored)
    judged = [r for r in rows if r.target == r.target]
    assert {r.judged_by for r in judged} == set(report.TARGETS)
    for r in judged:
        target = report.TARGETS[r.judged_by]
        assert r.higher_is_better == target.at_least, r.metric
        if r.judged_by == "storm":
            assert (r.target, r.target_text) == (1.0, f"<= {storm_bound_s():g} s, 0 lost")
        elif target.unit == "x":
            assert (r.target, r.target_text) == (target.bound, target.text), r.metric
        else:
            assert (r.target, r.target_text) == (1.0, target.text), r.metric


def test_every_missed_target_is_explained_on_the_page(stored: dict[str, Any]) -> None:
    """Each row that misses its target appears under *What is missed* with what is known about its gap."""
    rows = run.result_rows(stored)
    page = run.render(stored)
    missed_section = page.split("## What is missed, and why\n", 1)[1].split("\n## ", 1)[0]
    failing = [r for r in rows if r.target == r.target and not r.passed]
    assert failing, "the stored run misses no target, so this test checks nothing: give it a failing row"
    for r in failing:
        why = report.MISSED_WHY.get(r.judged_by, report.NOT_INVESTIGATED)
        assert f"- {r.metric}: {r.reference}" in missed_section
        assert why in missed_section
    assert set(report.MISSED_WHY) <= set(report.TARGETS)
