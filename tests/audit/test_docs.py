"""docs/audit.md stays generated from the rule registry and the mapping table."""

from __future__ import annotations

import re
from pathlib import Path

from stickyws.audit.report import catalog_markdown, sources_markdown

DOC = Path(__file__).resolve().parents[2] / "docs" / "audit.md"


def _section(name: str) -> str:
    match = re.search(rf"<!-- {name}:start -->\n(.*?)\n<!-- {name}:end -->", DOC.read_text(encoding="utf-8"), re.S)
    assert match, f"docs/audit.md lacks the {name} markers"
    return match.group(1)


def test_checks_table_in_docs_is_the_registry() -> None:
    """The 'What it checks' table in docs/audit.md equals catalog_markdown() of the live registry."""
    assert _section("catalog") == catalog_markdown()


def test_sources_table_in_docs_is_the_mapping() -> None:
    """The 'read from' table in docs/audit.md equals sources_markdown() of the mapping module."""
    assert _section("sources") == sources_markdown()
