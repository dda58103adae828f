"""Which build of the hot path runs (stickyws.compiled): never an extension compiled from other sources."""

from __future__ import annotations

import importlib.machinery
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import stickyws
from stickyws import compiled

PACKAGE = Path(stickyws.__file__).resolve().parent
SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]


def _fake_build(root: Path) -> Path:
    """A copy of the stickyws package under ``root`` whose every compiled module has an "extension" beside
    it (bytes no loader could load) and a manifest naming the sources as they are: a current build."""
    package = root / "stickyws"
    shutil.copytree(PACKAGE, package, ignore=shutil.ignore_patterns("__pycache__", "*.so", compiled.MANIFEST))
    for module in compiled.MODULES:
        stem = compiled.source_path(module, package).with_suffix("")
        stem.with_name(stem.name + SUFFIX).write_bytes(b"not a shared object")
    (package / (compiled.GROUP.split(".")[-1] + "__mypyc" + SUFFIX)).write_bytes(b"not a shared object")
    (package / compiled.MANIFEST).write_text(json.dumps(compiled.manifest("mypyc test", package)))
    return package


def _run(root: Path, code: str, **env: str) -> list[str]:
    clean = {k: v for k, v in os.environ.items() if k != compiled.PURE_ENV}
    done = subprocess.run(
        [sys.executable, "-c", code], env={**clean, "PYTHONPATH": str(root), **env}, cwd=root,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_a_package_without_extensions_is_pure_python_and_imports_normally(tmp_path: Path) -> None:
    """Without extension modules the build is pure Python and no import is redirected."""
    package = tmp_path / "stickyws"
    shutil.copytree(PACKAGE, package, ignore=shutil.ignore_patterns("__pycache__", "*.so", compiled.MANIFEST))
    assert compiled.inspect(package, {}) == compiled.BuildState(False, "not compiled")
    out = _run(tmp_path, "import sys, stickyws.compiled as c; print(c.state().describe());"
               "print(any(type(f).__name__ == '_SourceFinder' for f in sys.meta_path))")  # fmt: skip
    assert out == ["pure Python (not compiled)", "False"]


def test_a_current_build_is_judged_compiled(tmp_path: Path) -> None:
    """Every extension present and every source as the manifest recorded it: the compiled build runs."""
    package = _fake_build(tmp_path)
    assert compiled.inspect(package, {}) == compiled.BuildState(True, "mypyc test")
    assert compiled.BuildState(True, "mypyc test").describe() == "compiled (mypyc test)"


def test_an_edited_source_is_run_from_its_py_file_never_from_the_stale_extension(tmp_path: Path) -> None:
    """After a compiled module's source changes, every compiled module is imported from its ``.py`` (the stale
    extension is never loaded) and the state names the changed file."""
    package = _fake_build(tmp_path)
    core = compiled.source_path("stickyws.server.core", package)
    core.write_text(core.read_text() + "\nEDITED = True\n")
    detail = "changed since the compiled build: stickyws/server/core.py; rebuild it (make compiled)"
    assert compiled.inspect(package, {}) == compiled.BuildState(False, detail)
    out = _run(tmp_path, "import stickyws.compiled as c, stickyws.server.core as core, stickyws.registry.redis_lane"
               " as lane; print(c.state().describe()); print(core.EDITED, core.__file__.endswith('core.py'),"
               " lane.__file__.endswith('redis_lane.py'))")  # fmt: skip
    assert out == [f"pure Python ({detail})", "True True True"]


@pytest.mark.parametrize(
    ("damage", "detail"),
    [
        ("manifest", "compiled.json is missing or unreadable; rebuild it (make compiled)"),
        ("extension", "the compiled build is incomplete; rebuild it (make compiled)"),
        ("group", "the compiled build is incomplete; rebuild it (make compiled)"),
    ],
)
def test_an_incomplete_build_runs_the_sources(tmp_path: Path, damage: str, detail: str) -> None:
    """A build without its manifest, one of its extensions or its shared library is not run."""
    package = _fake_build(tmp_path)
    victim = {
        "manifest": package / compiled.MANIFEST,
        "extension": package / "server" / f"session{SUFFIX}",
        "group": package / f"native__mypyc{SUFFIX}",
    }[damage]
    victim.unlink()
    assert compiled.inspect(package, {}) == compiled.BuildState(False, detail)
    out = _run(tmp_path, "import stickyws.server.session as s; print(s.__file__.endswith('session.py'))")
    assert out == ["True"]


def test_the_pure_python_switch_runs_the_sources_of_a_current_build(tmp_path: Path) -> None:
    """``STICKYWS_PURE_PYTHON=1`` runs the sources although the build is current."""
    package = _fake_build(tmp_path)
    assert compiled.inspect(package, {compiled.PURE_ENV: "1"}) == compiled.BuildState(False, "STICKYWS_PURE_PYTHON=1")
    out = _run(tmp_path, "import stickyws.compiled as c, stickyws.protocol as p; print(c.state().describe());"
               " print(p.__file__.endswith('protocol.py'))", STICKYWS_PURE_PYTHON="1")  # fmt: skip
    assert out == ["pure Python (STICKYWS_PURE_PYTHON=1)", "True"]


def test_the_modules_this_process_runs_are_the_build_its_state_names() -> None:
    """Each compiled module of this process is an extension exactly when the state says compiled."""
    import importlib

    state = compiled.state()
    files = {m: importlib.import_module(m).__file__ or "" for m in compiled.MODULES}
    assert {m: f.endswith(SUFFIX) for m, f in files.items()} == dict.fromkeys(compiled.MODULES, state.compiled)
    if os.environ.get("STICKYWS_EXPECT_COMPILED") == "1":
        assert state.compiled, f"make test runs the compiled build, but this process runs {state.describe()}"


def test_the_build_files_are_the_extension_modules_under_the_package_and_the_manifest() -> None:
    """What a compiled wheel adds to a pure one: extension modules under stickyws/ and the manifest, nothing else."""
    names = [
        f"stickyws/protocol{SUFFIX}",
        f"stickyws/native__mypyc{SUFFIX}",
        f"stickyws/server/core{SUFFIX}",
        f"stickyws/{compiled.MANIFEST}",
        "stickyws/protocol.py",
        "stickyws/compiled.py",
        f"stickyws/server/{compiled.MANIFEST}",
        f"constructs_lib/native{SUFFIX}",
        f"stickyws-0.1.0.dist-info/{compiled.MANIFEST}",
    ]
    assert [n for n in names if compiled.is_build_file(n)] == names[:4]
