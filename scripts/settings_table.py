#!/usr/bin/env python3
"""Print the settings table (Markdown) generated from ``stickyws.settings.FIELDS``.

    python scripts/settings_table.py                   # print the table
    python scripts/settings_table.py --update docs/iac.md   # rewrite the table between the markers

The table in docs/iac.md sits between ``<!-- settings-table:start -->`` and
``<!-- settings-table:end -->``; tests/cdk/test_nag_and_lint.py fails when it is out of date.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stickyws.settings import FIELDS, render_value

START = "<!-- settings-table:start -->"
END = "<!-- settings-table:end -->"


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


def replace_table(document: str, table: str) -> str:
    """``document`` with the text between the markers replaced by ``table``."""
    head, sep, rest = document.partition(START)
    if not sep or END not in rest:
        raise ValueError(f"markers {START} ... {END} not found")
    _, _, tail = rest.partition(END)
    return f"{head}{START}\n{table}{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--update", type=Path, metavar="MARKDOWN", help="rewrite the table in this file")
    args = parser.parse_args(argv)
    table = render_table()
    if args.update is None:
        sys.stdout.write(table)
        return 0
    args.update.write_text(replace_table(args.update.read_text(encoding="utf-8"), table), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
