"""docs/eks.md shows the kubernetes group's settings and rules exactly as scripts/settings_table.py renders them."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "eks.md"


def _table_module() -> Any:
    spec = importlib.util.spec_from_file_location("settings_table", ROOT / "scripts" / "settings_table.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _section(name: str) -> str:
    match = re.search(rf"<!-- {name}:start -->\n(.*?)<!-- {name}:end -->", DOC.read_text(encoding="utf-8"), re.S)
    assert match, f"docs/eks.md lacks the {name} markers"
    return match.group(1)


def _rows(table: str, keep: Any) -> str:
    lines = table.splitlines()
    return "\n".join(lines[:2] + [line for line in lines[2:] if keep(line.split(" | "))]) + "\n"


def test_settings_table_is_the_kubernetes_group() -> None:
    """The settings table of docs/eks.md is the README table's rows of the kubernetes group, in model order."""
    expected = _rows(_table_module().render_table(), lambda cells: cells[1] == "kubernetes")
    assert _section("k8s-settings-table") == expected
    assert expected.count("\n") == 2 + 13


def test_rules_table_is_the_kubernetes_rules() -> None:
    """The rules table of docs/eks.md is the README rules table's rows of the rules that need Kubernetes."""
    expected = _rows(_table_module().render_rules(), lambda cells: "kubernetes" in cells[1])
    assert _section("k8s-rules-table") == expected
    assert expected.count("\n") == 2 + 9


def test_iac_docs_link_the_eks_path() -> None:
    """docs/iac.md points at docs/eks.md."""
    assert "(eks.md)" in (ROOT / "docs" / "iac.md").read_text(encoding="utf-8")
