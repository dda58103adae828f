"""Which build of the hot path runs: the modules compiled by mypyc, or their Python sources.

The server's hot path, per message and per handshake (:data:`MODULES`), can be compiled by mypyc into C
extensions (the wheel built with ``STICKYWS_MYPYC=1``, the container image, ``make compiled`` in a
checkout; see setup.py).
The build writes :data:`MANIFEST` next to this module: the SHA-256 of every compiled module's source.
Python would import an extension module in preference to the ``.py`` beside it, also when the source
has changed since the build; :func:`choose`, run once when ``stickyws`` is imported, prevents that:

* every compiled module present and every source unchanged: the compiled build runs;
* anything else (a source edited since the build, an extension or the manifest missing, or
  ``STICKYWS_PURE_PYTHON=1``): every one of :data:`MODULES` is imported from its source (all or none,
  because compiled modules call each other directly), and :func:`state` says why.

:func:`state` is what ``stickyws --version`` prints and what the server logs at start. Standard library
only: this module is imported first, and setup.py reads :data:`MODULES` from it.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Final, NamedTuple

#: The modules of the hot path (per message and per handshake) that the compiled build compiles (measured in
#: bench/findings.md).
MODULES: Final = (
    "stickyws.protocol",
    "stickyws.registry.memory",
    "stickyws.registry.records",
    "stickyws.registry.redis_bus",
    "stickyws.registry.redis_connection",
    "stickyws.registry.redis_lane",
    "stickyws.registry.redis_listener",
    "stickyws.registry.redis_registry",
    "stickyws.registry.redis_store",
    "stickyws.registry.wire",
    "stickyws.server.admission",
    "stickyws.server.auth",
    "stickyws.server.core",
    "stickyws.server.core_types",
    "stickyws.server.http_head",
    "stickyws.server.jwt_hs256",
    "stickyws.server.metrics",
    "stickyws.server.upkeep",
    "stickyws.server.delivery",
    "stickyws.server.inbound",
    "stickyws.server.outbound",
    "stickyws.server.session",
    "stickyws.server.ws_adapter",
    "stickyws.server.ws_connection",
    "stickyws.server.ws_frames",
)
#: mypyc's group: the compiled code of every module is in one shared library, ``stickyws/native__mypyc*``.
GROUP: Final = "stickyws.native"
#: The same modules as files, relative to the project root (what setup.py hands to mypyc, and what
#: ``make compiled`` watches).
SOURCES: Final = tuple(m.replace(".", "/") + ".py" for m in MODULES)
#: The build's record of what it compiled, beside this module.
MANIFEST: Final = "compiled.json"
#: Set to ``1`` to run the Python sources although a current compiled build is installed.
PURE_ENV: Final = "STICKYWS_PURE_PYTHON"

PACKAGE_DIR: Final = Path(__file__).resolve().parent


class BuildState(NamedTuple):
    """``compiled``: whether the mypyc build of :data:`MODULES` runs; ``detail``: the compiler, or why not."""

    compiled: bool
    detail: str

    def describe(self) -> str:
        """One line for ``--version`` and the server's start log."""
        return f"compiled ({self.detail})" if self.compiled else f"pure Python ({self.detail})"


def source_path(module: str, package_dir: Path = PACKAGE_DIR) -> Path:
    """The ``.py`` file of ``module`` (one of :data:`MODULES`) under the package directory."""
    return package_dir.joinpath(*module.split(".")[1:]).with_suffix(".py")


def source_digest(path: Path) -> str:
    """SHA-256 of a source file, as the manifest records it."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def manifest(compiler: str, package_dir: Path = PACKAGE_DIR) -> dict[str, object]:
    """The manifest a build writes after compiling :data:`MODULES` from the sources under ``package_dir``."""
    return {
        "compiler": compiler,
        "sources": {m: source_digest(source_path(m, package_dir)) for m in MODULES},
    }


def is_build_file(posix: str) -> bool:
    """Whether ``posix`` (a path relative to site-packages, a wheel's root or the project, ``/``-separated)
    is a file the compiled build adds: an extension module under ``stickyws/`` or :data:`MANIFEST`."""
    return posix.startswith("stickyws/") and (
        posix == f"stickyws/{MANIFEST}" or posix.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))
    )


def _extension(stem: Path) -> Path | None:
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        if (candidate := stem.with_name(stem.name + suffix)).is_file():
            return candidate
    return None


def _judge(package_dir: Path, env: Mapping[str, str]) -> tuple[BuildState, bool]:
    """The build under ``package_dir`` and whether extension modules are present (reads files only)."""
    stems = [source_path(m, package_dir).with_suffix("") for m in MODULES]
    present = [s for s in stems if _extension(s) is not None]
    if not present:
        return BuildState(False, "not compiled"), False
    if env.get(PURE_ENV) == "1":
        return BuildState(False, f"{PURE_ENV}=1"), True
    if len(present) != len(stems) or _extension(package_dir / (GROUP.split(".")[-1] + "__mypyc")) is None:
        return BuildState(False, "the compiled build is incomplete; rebuild it (make compiled)"), True
    try:
        recorded = json.loads((package_dir / MANIFEST).read_text())
        compiler, sources = str(recorded["compiler"]), dict(recorded["sources"])
    except (OSError, ValueError, KeyError, TypeError):
        return BuildState(False, f"{MANIFEST} is missing or unreadable; rebuild it (make compiled)"), True
    changed = [m for m in MODULES if sources.get(m) != source_digest(source_path(m, package_dir))]
    if changed:
        names = ", ".join(str(source_path(m, package_dir).relative_to(package_dir.parent)) for m in changed)
        return BuildState(False, f"changed since the compiled build: {names}; rebuild it (make compiled)"), True
    return BuildState(True, compiler), True


def inspect(package_dir: Path = PACKAGE_DIR, environ: Mapping[str, str] | None = None) -> BuildState:
    """Judge the build under ``package_dir`` (see the module docstring); reads files, changes nothing."""
    return _judge(package_dir, os.environ if environ is None else environ)[0]


class _SourceFinder(importlib.abc.MetaPathFinder):
    """Imports :data:`MODULES` from their ``.py`` files, ahead of the extension modules beside them."""

    def __init__(self, package_dir: Path) -> None:
        self._package_dir = package_dir

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MODULES:
            return None
        return importlib.util.spec_from_file_location(fullname, source_path(fullname, self._package_dir))


_state: BuildState | None = None


def choose() -> BuildState:
    """Decide once per process which build runs (see the module docstring); later calls return the same."""
    global _state
    if _state is None:
        _state, extensions = _judge(PACKAGE_DIR, os.environ)
        if extensions and not _state.compiled:
            sys.meta_path.insert(0, _SourceFinder(PACKAGE_DIR))
    return _state


def state() -> BuildState:
    """The build this process runs."""
    return choose()
