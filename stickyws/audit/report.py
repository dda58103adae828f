"""Render an :class:`~stickyws.audit.checks.Audit`: a short readable report, or JSON for machines.

The default report lists what needs attention: failures, then warnings, each with what was found
and its fix; passes and skipped checks are counted in one line each. ``verbose`` lists every row:
passes with what they read, skipped ones with the reason. Both renderings are pure functions of the
audit; the CLI only prints them.
"""

from __future__ import annotations

import textwrap
from typing import Any

from stickyws.audit import mapping
from stickyws.audit.checks import Audit, CheckResult, Status, catalog, scopes_of
from stickyws.settings import Scope, render_value

#: Width the report's text wraps at.
WIDTH = 110
#: Indent of a row's found/fix lines, under its rule id.
INDENT = "      "
#: Report order of the statuses.
ORDER = (Status.FAIL, Status.WARN, Status.PASS, Status.SKIP)
#: Names of the parts in the report.
PART_NAMES = {
    Scope.LOAD_BALANCER: "load balancer",
    Scope.SERVICE: "ECS service",
    Scope.SERVER: "server",
    Scope.REGISTRY: "registry",
    Scope.KUBERNETES: "Kubernetes workload",
}

#: Names of every scope in the catalog: the parts, and the two that follow from the server mode.
SCOPE_NAMES = {
    **PART_NAMES,
    Scope.REFERENCE_SERVER: "reference server",
    Scope.CLIENT: "reference client",
}

#: What the skipped rows have in common, as the count line says it.
SKIPPED = "parts this deployment does not have, or settings its server is not told"


def summary(audit: Audit) -> dict[str, int]:
    """Count of results per status, e.g. ``{"pass": 16, "warn": 1, "fail": 0, "skip": 9}``."""
    return {s.value: sum(1 for r in audit.results if r.status is s) for s in Status}


def render_table(audit: Audit, *, verbose: bool = False) -> str:
    """The audit as text: a header, the rows that need attention (every row with ``verbose``), the counts.

    The last line is ``P pass, W warn, F fail (exit N)``.
    """
    lines = [f"stickyws audit of {audit.source}", f"server: {describe_server(audit)}"]
    parts = [name for part, name in PART_NAMES.items() if part in audit.parts]
    lines.append(f"parts: {', '.join(parts) or 'none'}")
    lines.append("")
    shown = ORDER if verbose else (Status.FAIL, Status.WARN)
    rows = [r for status in shown for r in audit.results if r.status is status]
    for row in rows:
        lines += _block(row)
    if rows:
        lines.append("")
    if audit.overrides:
        lines += [o.describe() for o in audit.overrides]
    lines += [f"note: {n}" for n in audit.notes]
    if audit.overrides or audit.notes:
        lines.append("")
    counts = summary(audit)
    hint = "" if verbose else " (--verbose lists them)"
    lines.append(f"{counts['pass']} passed{hint}")
    if counts["skip"]:
        hint = "" if verbose else " (--verbose lists why)"
        lines.append(f"{counts['skip']} skipped: {SKIPPED}{hint}")
    lines.append(f"{counts['pass']} pass, {counts['warn']} warn, {counts['fail']} fail (exit {audit.exit_code})")
    return "\n".join(lines)


def describe_server(audit: Audit) -> str:
    """Whose server the audit judged and what it reads, in one phrase."""
    if Scope.SERVER not in audit.parts:
        return "none read"
    if not audit.settings.own_server:
        return f"the reference server, {len(audit.server_read)} settings read from its STICKYWS_* environment"
    told = ", ".join(f"{name} as {variable}" for name, variable in audit.server_told.items())
    return f"your own (server_mode=own), told {told or 'no setting'}"


def _block(row: CheckResult) -> list[str]:
    """A row as ``status  rule: summary`` with its found (or skip reason) and fix lines under it."""
    lines = textwrap.wrap(
        f"{row.status.value:<4}  {row.rule}: {row.expected}",
        WIDTH,
        subsequent_indent=INDENT,
        break_on_hyphens=False,
    )
    label = "skipped" if row.status is Status.SKIP else "found"
    for name, text in ((label, row.found), ("fix", row.fix)):
        if text:
            lines += textwrap.wrap(
                f"{name}: {text}",
                WIDTH,
                initial_indent=INDENT,
                subsequent_indent=INDENT + "  ",
                break_on_hyphens=False,
            )
    return lines


def to_json(audit: Audit) -> dict[str, Any]:
    """The audit as plain JSON data: every result, the parts, the server, the settings judged and their sources."""
    return {
        "source": audit.source,
        "exit_code": audit.exit_code,
        "summary": summary(audit),
        "parts": sorted(p.value for p in audit.parts),
        "server": {
            "mode": audit.settings["server_mode"],
            "told": dict(audit.server_told),
            "read": dict(audit.server_read),
        },
        "overrides": [
            {"name": o.name, "value": o.value, "replaced": o.replaced, "where": o.where} for o in audit.overrides
        ],
        "results": [
            {
                "rule": r.rule,
                "kind": r.kind,
                "status": r.status.value,
                "scopes": sorted(s.value for s in r.scopes),
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
    """Markdown table of every rule and check the audit runs and the parts each needs (docs/audit.md embeds it;
    a test keeps it current)."""
    lines = ["| Rule | Kind | Runs when the deployment has | What passes |", "|---|---|---|---|"]
    for rule_id, kind, text in catalog():
        needs = " + ".join(SCOPE_NAMES[s] for s in Scope if s in scopes_of(rule_id)) or "always"
        lines.append(f"| `{rule_id}` | {kind} | {needs} | {text.replace('|', '/')} |")
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
    rows += [(s, f"ECS service `{p}`", d or "-") for s, _, p, d in mapping.DEPLOYMENT_FIELDS]
    rows.append(("stop_timeout_s", "container `stopTimeout`", mapping.FARGATE_STOP_TIMEOUT_DEFAULT))
    rows.append(("task_cpu", "task definition `cpu`", "-"))
    rows.append(("task_memory_mib", "task definition `memory`", "-"))
    rows += [(s, f"registry cache {p}", "-") for s, _, p in mapping.REGISTRY_FIELDS]
    lines = ["| Setting | Read from | AWS default when unset |", "|---|---|---|"]
    lines += [f"| `{name}` | {where} | {default} |" for name, where, default in rows]
    return "\n".join(lines)
