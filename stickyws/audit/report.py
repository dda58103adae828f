"""Render an :class:`~stickyws.audit.checks.Audit`: a readable table, or JSON for machines.

Both renderings are pure functions of the audit; the CLI only prints them.
"""

from __future__ import annotations

import textwrap
from typing import Any

from stickyws.audit import mapping
from stickyws.audit.checks import Audit, Status, catalog
from stickyws.settings import render_value

#: (header, width) of the table's columns; long cells wrap inside their column.
COLUMNS: tuple[tuple[str, int], ...] = (
    ("RULE", 33),
    ("STATUS", 6),
    ("FOUND", 46),
    ("EXPECTED", 36),
    ("FIX", 36),
)


def summary(audit: Audit) -> dict[str, int]:
    """Count of results per status, e.g. ``{"pass": 16, "warn": 1, "fail": 0}``."""
    return {s.value: sum(1 for r in audit.results if r.status is s) for s in Status}


def render_table(audit: Audit) -> str:
    """The audit as a fixed-width text table with its notes and a one-line summary."""
    lines = [f"stickyws audit of {audit.source}", ""]
    lines.append(_row([h for h, _ in COLUMNS]))
    lines.append(_row(["-" * w for _, w in COLUMNS]))
    for r in audit.results:
        lines.append(_row([r.rule, r.status.value, r.found, r.expected, r.fix or "-"]))
    if audit.notes:
        lines.append("")
        lines += [f"note: {n}" for n in audit.notes]
    counts = summary(audit)
    lines.append("")
    lines.append(f"{counts['pass']} pass, {counts['warn']} warn, {counts['fail']} fail (exit {audit.exit_code})")
    return "\n".join(lines)


def _row(cells: list[str]) -> str:
    wrapped = [textwrap.wrap(c, w, break_on_hyphens=False) or [""] for c, (_, w) in zip(cells, COLUMNS, strict=True)]
    height = max(len(w) for w in wrapped)
    out = []
    for i in range(height):
        parts = [(w[i] if i < len(w) else "").ljust(width) for w, (_, width) in zip(wrapped, COLUMNS, strict=True)]
        out.append("  ".join(parts).rstrip())
    return "\n".join(out)


def to_json(audit: Audit) -> dict[str, Any]:
    """The audit as plain JSON data: results, the settings judged, where each observed one came from."""
    return {
        "source": audit.source,
        "exit_code": audit.exit_code,
        "summary": summary(audit),
        "results": [
            {
                "rule": r.rule,
                "kind": r.kind,
                "status": r.status.value,
                "found": r.found,
                "expected": r.expected,
                "fix": r.fix,
            }
            for r in audit.results
        ],
        "settings": {name: render_value(value) for name, value in audit.settings.items()},
        "observed": {
            name: {"value": o.text, "where": o.where, "aws_default": o.aws_default}
            for name, o in sorted(audit.observed.items())
        },
        "notes": list(audit.notes),
    }


def catalog_markdown() -> str:
    """Markdown table of every rule and check the audit runs (docs/audit.md embeds it; a test keeps it current)."""
    lines = ["| Rule | Kind | What passes |", "|---|---|---|"]
    lines += [f"| `{rule_id}` | {kind} | {summary.replace('|', '/')} |" for rule_id, kind, summary in catalog()]
    return "\n".join(lines)


def sources_markdown() -> str:
    """Markdown table of where the auditor reads each infrastructure setting, with the AWS default it assumes."""
    rows = [(s, f"load balancer attribute `{k}`", d) for s, k, d in mapping.LOAD_BALANCER_ATTRIBUTES]
    rows += [(s, f"target group attribute `{k}`", d) for s, k, d in mapping.TARGET_GROUP_ATTRIBUTES]
    rows.append(
        (
            "stickiness_duration_s",
            " or ".join(f"`{k}`" for k in mapping.STICKINESS_DURATION_KEYS.values()),
            mapping.STICKINESS_DURATION_DEFAULT,
        )
    )
    rows.append(("app_cookie_name", f"target group attribute `{mapping.APP_COOKIE_NAME_KEY}`", "-"))
    rows += [(s, f"target group `{p}`", d) for s, _, p, d in mapping.HEALTH_CHECK_FIELDS]
    rows += [(s, f"ECS service `{p}`", d or "-") for s, _, p, d in mapping.SERVICE_FIELDS]
    rows.append(("stop_timeout_s", "container `stopTimeout`", mapping.FARGATE_STOP_TIMEOUT_DEFAULT))
    rows.append(("task_cpu", "task definition `cpu`", "-"))
    rows.append(("task_memory_mib", "task definition `memory`", "-"))
    rows += [(s, f"registry cache {p}", "-") for s, _, p in mapping.REGISTRY_FIELDS]
    lines = ["| Setting | Read from | AWS default when unset |", "|---|---|---|"]
    lines += [f"| `{name}` | {where} | {default} |" for name, where, default in rows]
    return "\n".join(lines)
