"""`stickyws --version`: the installed version on stdout, exit 0."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

import pytest

import stickyws
from stickyws import compiled
from stickyws.cli import main


def test_version_prints_the_package_version_and_exits_0() -> None:
    """`stickyws --version` (the program as users run it) prints `stickyws <__version__> (<build>)` and exits 0."""
    result = subprocess.run([sys.executable, "-m", "stickyws", "--version"], capture_output=True, text=True, timeout=30)
    build = compiled.state().describe()
    assert (result.returncode, result.stdout, result.stderr) == (0, f"stickyws {stickyws.__version__} ({build})\n", "")


def test_version_is_the_installed_distributions(capsys: pytest.CaptureFixture[str]) -> None:
    """The version printed is the one the installed distribution declares (pyproject reads __version__)."""
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out == f"stickyws {importlib.metadata.version('stickyws')} ({compiled.state().describe()})\n"
