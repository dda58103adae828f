#!/usr/bin/env python3
"""Print the settings table (Markdown) generated from ``stickyws.settings.FIELDS``.

    python scripts/settings_table.py                   # print the table
    python scripts/settings_table.py --update README.md   # rewrite the table between the markers

The table in README.md sits between ``<!-- settings-table:start -->`` and
``<!-- settings-table:end -->``; tests/cdk/test_nag_and_lint.py fails when it is out of date.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stickyws.settings import FIELDS, RULES, render_value

START = "<!-- settings-table:start -->"
END = "<!-- settings-table:end -->"
RULES_START = "<!-- rules-table:start -->"
RULES_END = "<!-- rules-table:end -->"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_table() -> str:
    """The Markdown table: one row per setting with its group, default, allowed range and meaning."""
    lines = [
        "| name | group | default | range | meaning |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, info in FIELDS.items():
        default = render_value(info.default)
        range_text = "true | false" if info.type is bool else info.spec.describe_range()
        if info.spec.lo is not None or info.spec.hi is not None or info.spec.choices:
            range_text = f"{range_text} ({info.spec.source})"
        lines.append(
            f"| `{name}` | {info.group} | {_cell(f'`{default}`' if default else '(empty)')} "
            f"| {_cell(range_text)} | {_cell(info.spec.doc)} |"
        )
    return "\n".join(lines) + "\n"


def render_rules() -> str:
    """The Markdown table of the named rules: id and what each one guarantees."""
    lines = ["| rule | runs where the deployment has | guarantees |", "| --- | --- | --- |"]
    for rule in RULES.values():
        scopes = " + ".join(s.value for s in sorted(rule.scopes, key=lambda s: s.value)) or "any part (per setting)"
        lines.append(f"| `{rule.id}` | {_cell(scopes)} | {_cell(rule.summary)} |")
    return "\n".join(lines) + "\n"


def replace_table(document: str, table: str, start: str = START, end: str = END) -> str:
    """``document`` with the text between the ``start`` and ``end`` markers replaced by ``table``."""
    head, sep, rest = document.partition(start)
    if not sep or end not in rest:
        raise ValueError(f"markers {start} ... {end} not found")
    _, _, tail = rest.partition(end)
    return f"{head}{start}\n{table}{end}{tail}"


def update(document: str) -> str:
    """``document`` with both generated tables (settings and rules) brought up to date."""
    document = replace_table(document, render_table())
    return replace_table(document, render_rules(), RULES_START, RULES_END)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--update", type=Path, metavar="MARKDOWN", help="rewrite the table in this file")
    args = parser.parse_args(argv)
    table = render_table()
    if args.update is None:
        sys.stdout.write(table)
        return 0
    args.update.write_text(update(args.update.read_text(encoding="utf-8")), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
