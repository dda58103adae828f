"""Build the compiled wheel of this checkout and, unless ``--wheel-only``, run the checkout on it (``make compiled``).

The wheel (setup.py with ``STICKYWS_MYPYC=1``: the modules of ``stickyws.compiled.MODULES`` compiled by
mypyc, a platform wheel) goes to ``build/compiled/``; then its extension modules and ``compiled.json``
are put beside their sources, so ``import stickyws`` in this checkout runs the compiled build (and
``stickyws.compiled`` stops running it as soon as one of those sources changes). The C files and objects
stay in ``build/``, so a rebuild after a small change recompiles only what changed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a file: the checkout's stickyws, not an installed one
from stickyws.compiled import is_build_file  # noqa: E402 - after the path

OUT = ROOT / "build" / "compiled"


def build_wheel() -> Path:
    """Build the compiled wheel into :data:`OUT` (replacing an older one); returns its path."""
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("stickyws-*.whl"):
        old.unlink()
    command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check", "--no-build-isolation",
               "--no-deps", "--wheel-dir", str(OUT), str(ROOT)]  # fmt: skip
    built = subprocess.run(command, cwd=ROOT, env={**os.environ, "STICKYWS_MYPYC": "1"}, check=False)
    if built.returncode != 0:
        sys.exit(f"the compiled build failed (exit {built.returncode}): it needs a C compiler and Python's headers")
    (wheel,) = OUT.glob("stickyws-*.whl")
    return wheel


def put_in_place(wheel: Path) -> int:
    """Replace the checkout's compiled files with the wheel's; returns how many were written."""
    for stale in (ROOT / "stickyws").rglob("*"):
        if is_build_file(stale.relative_to(ROOT).as_posix()):
            stale.unlink()
    with zipfile.ZipFile(wheel) as archive:
        names = [n for n in archive.namelist() if is_build_file(n)]
        for name in names:
            (ROOT / name).write_bytes(archive.read(name))
    return len(names)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheel-only", action="store_true", help="build the wheel; leave the checkout as it is")
    args = parser.parse_args(argv)
    started = time.monotonic()
    wheel = build_wheel()
    placed = "" if args.wheel_only else f"; {put_in_place(wheel)} files put beside their sources"
    print(f"compiled build in {time.monotonic() - started:.0f} s: {wheel.relative_to(ROOT)}{placed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
