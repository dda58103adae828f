"""Build hook of stickyws (the metadata is in pyproject.toml): the optional compiled build of the hot path.

With ``STICKYWS_MYPYC=1`` the modules of ``stickyws.compiled.MODULES`` are compiled by mypyc (with the
mypy this environment has: build with ``--no-build-isolation`` after installing the ``dev`` extra or
``mypy`` and the ``server`` extra, so the compiler sees the same types as ``make lint``) and the build
writes ``stickyws/compiled.json``, the record ``stickyws.compiled`` checks before it lets the
extensions run. Without it the build is pure Python. Used by the container image's Dockerfile (a
compiled wheel), ``make compiled`` (in place, in a checkout) and ``pip wheel`` for a platform wheel.
"""

from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path
from typing import Any

from setuptools import setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
COMPILED = runpy.run_path(str(ROOT / "stickyws" / "compiled.py"), run_name="stickyws_compiled_build")
#: Optimisation level of the C compiler for the compiled modules (mypyc's default is 3).
OPT_LEVEL = os.environ.get("STICKYWS_MYPYC_OPT_LEVEL", "3")


def _compiled_extensions() -> tuple[list[Any], dict[str, type]]:
    try:
        import mypy.version
        from mypyc.build import mypycify
    except ImportError:
        sys.exit(
            "STICKYWS_MYPYC=1 needs mypy (which brings mypyc) in the build environment: "
            "pip install -c constraints.txt mypy, then build with --no-build-isolation"
        )
    paths = list(COMPILED["SOURCES"])
    compiler = f"mypyc {mypy.version.__version__}"

    class BuildWithManifest(build_ext):  # type: ignore[misc]
        """Compiles, then records the compiled sources' digests beside ``stickyws/compiled.py``."""

        def run(self) -> None:
            super().run()
            target = ROOT / "stickyws" if self.inplace else Path(self.build_lib) / "stickyws"
            target.mkdir(parents=True, exist_ok=True)
            record = COMPILED["manifest"](compiler, ROOT / "stickyws")
            (target / COMPILED["MANIFEST"]).write_text(__import__("json").dumps(record, indent=1) + "\n")

    extensions = mypycify(paths, opt_level=OPT_LEVEL, group_name=COMPILED["GROUP"])
    return extensions, {"build_ext": BuildWithManifest}


if os.environ.get("STICKYWS_MYPYC") == "1":
    ext_modules, cmdclass = _compiled_extensions()
    setup(ext_modules=ext_modules, cmdclass=cmdclass)
else:
    setup()
