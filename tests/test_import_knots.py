"""Imports run one way: no stickyws or bench module reaches itself, commands never import their dispatcher."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

from tests.packaging.test_layout import REPO_ROOT, _reachable, import_graph


def _cycles(graph: dict[str, set[str]]) -> list[str]:
    """Modules that reach themselves through run-time imports (lazy ones inside functions included)."""
    return sorted(m for m in graph if m in _reachable(graph, m))


def test_stickyws_has_no_import_cycle() -> None:
    """No stickyws module reaches itself, stickyws.testing's deployment and readiness included."""
    graph = import_graph("stickyws")
    assert {"stickyws.testing.deployment", "stickyws.testing.readiness"} <= set(graph)
    assert _cycles(graph) == []


def test_testing_modules_import_in_one_direction() -> None:
    """readiness builds on deployment and audits; deployment on audits; audits on neither."""
    graph = import_graph("stickyws")
    testing = {m: {e for e in graph[m] if e.startswith("stickyws.testing.")} for m in graph}
    assert testing["stickyws.testing.readiness"] >= {"stickyws.testing.deployment", "stickyws.testing.audits"}
    assert "stickyws.testing.readiness" not in _reachable(graph, "stickyws.testing.deployment")
    assert testing["stickyws.testing.audits"] == set()


def test_no_command_module_imports_the_dispatcher() -> None:
    """The sub-commands (stickyws.<package>.cli) reach neither stickyws.cli nor each other; they share cli_errors."""
    graph = import_graph("stickyws")
    commands = sorted(m for m in graph if m.startswith("stickyws.") and m.endswith(".cli") and m != "stickyws.cli")
    assert commands == [
        "stickyws.audit.cli",
        "stickyws.client.cli",
        "stickyws.k8s.cli",
        "stickyws.publish.cli",
        "stickyws.server.cli",
        "stickyws.twin.cli",
    ]
    assert {m: "stickyws.cli" in _reachable(graph, m) for m in commands} == dict.fromkeys(commands, False)
    assert {m for m in commands if "stickyws.cli_errors" in graph[m]} == {
        "stickyws.audit.cli",
        "stickyws.client.cli",
        "stickyws.k8s.cli",
        "stickyws.twin.cli",
    }
    assert graph["stickyws.cli_errors"] == {"stickyws.errors"}
    assert graph["stickyws.errors"] == set()


def test_python_m_stickyws_cli_prints_a_command_error_as_one_line() -> None:
    """`python -m stickyws.cli` (the dispatcher as __main__) catches the CommandError a sub-command raises."""
    env = {k: v for k, v in os.environ.items() if k != "STICKYWS_TOKEN"}
    done = subprocess.run(
        [sys.executable, "-m", "stickyws.cli", "client", "ws://127.0.0.1:9/ws"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        timeout=60,
    )
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        "stickyws: no token: pass --token or set STICKYWS_TOKEN (the twin prints one; or stickyws token)\n"
    )


def test_bench_has_no_import_cycle() -> None:
    """No bench module reaches itself: the runner sits above the variants, scenarios and fan-out."""
    graph = import_graph("bench")
    assert {"bench.run", "bench.scenarios", "bench.variants", "bench.fanout", "bench.host"} <= set(graph)
    assert _cycles(graph) == []
    assert graph["bench.host"] == set()
    assert graph["bench.report"] == set()
    assert "bench.run" not in set().union(*(graph[m] for m in graph if m != "bench.run" and m != "bench.profile"))


def _assigned_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        targets = (
            node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        )
        names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return names


def test_the_saturation_bound_is_defined_once_in_report() -> None:
    """Only bench/report.py defines a CPU-saturation bound; variants and shards import that one."""
    defining = sorted(
        (path.name, name)
        for path in (REPO_ROOT / "bench").glob("*.py")
        for name in _assigned_names(path)
        if "SATURAT" in name
    )
    assert defining == [("report.py", "GEN_SATURATED_CORES")]
    graph = import_graph("bench")
    assert {"bench.variants", "bench.shards"} <= {m for m in graph if "bench.report" in graph[m]}
    for module in ("variants", "shards"):
        tree = ast.parse((REPO_ROOT / "bench" / f"{module}.py").read_text(encoding="utf-8"))
        imported = {
            (node.module, alias.name)
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
            for alias in node.names
        }
        assert ("bench.report", "GEN_SATURATED_CORES") in imported, module
