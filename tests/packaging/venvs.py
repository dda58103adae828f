"""Fresh venvs outside the checkout for the packaging tests: the wheel, its venvs and a user project run in them.

* :func:`build_wheel`: the wheel, built from a copy of the sources (the build writes nothing into the checkout).
* :func:`linked_venv`: the wheel installed with ``--no-deps``; the third-party packages come from this
  suite's own environment through a ``.pth`` file naming a directory of symlinks to its site-packages
  entries, minus stickyws, constructs_lib and the editable-install finder: the files PyPI would give,
  without a 700 MB download.
* :func:`resolved_venv`: the wheel with extras and pins, resolved and installed by pip from the
  package index (pip's cache makes a rerun fast).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement

REPO_ROOT = Path(__file__).resolve().parents[2]
PROJECTS = Path(__file__).resolve().parent
#: What the wheel is built from (copied, so the build writes nothing into the checkout).
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "stickyws", "constructs_lib")
#: Entries of this environment's site-packages that a linked venv must NOT see.
EXCLUDED_PREFIXES = ("stickyws", "constructs_lib", "__editable__", "_distutils_hack", "__pycache__")
TIMEOUT_S = 240
PIP = (sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", "--quiet")


@dataclass(frozen=True)
class Venv:
    """A venv in ``root`` (outside the checkout) with the wheel installed."""

    root: Path
    python: Path
    site_packages: Path

    def env(self, **extra: str) -> dict[str, str]:
        """An environment with only the venv's bin and node on PATH, nothing on PYTHONPATH, no CDK validation.

        aws-cdk-lib's built-in CloudFormation validation (which the oldest supported aws-cdk-lib
        lacks) costs seconds per synth; the audit and the moto deployments check the templates here.
        """
        node = shutil.which("node")
        assert node is not None, "node is needed by aws-cdk-lib (jsii)"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "PYTEST"))}
        env["PATH"] = os.pathsep.join([str(self.python.parent), str(Path(node).parent), "/usr/bin", "/bin"])
        env["PYTHONNOUSERSITE"] = "1"
        env["JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION"] = "20"
        env["CDK_VALIDATION"] = "false"
        env.update(extra)
        return env

    def run(self, *args: str, cwd: Path | None = None, **extra: str) -> subprocess.CompletedProcess[str]:
        """Run a command (default folder: the venv's root) with :meth:`env`."""
        return subprocess.run(
            list(args), cwd=cwd or self.root, env=self.env(**extra), capture_output=True, text=True,
            timeout=TIMEOUT_S, check=False,
        )  # fmt: skip

    def versions(self, *names: str) -> dict[str, str]:
        """The installed version of each distribution, as the venv's interpreter sees it."""
        script = "import importlib.metadata as m, json, sys; print(json.dumps({n: m.version(n) for n in sys.argv[1:]}))"
        done = self.run(str(self.python), "-c", script, *names)
        assert done.returncode == 0, done.stderr
        found: dict[str, str] = json.loads(done.stdout)
        return found


def build_wheel(root: Path) -> Path:
    """Build the wheel from a copy of the sources under ``root``; returns its path."""
    src = root / "src"
    src.mkdir()
    for name in SOURCES:
        path = REPO_ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, src / name)
    built = subprocess.run(
        [*PIP, "wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", str(root / "dist"), str(src)],
        capture_output=True, text=True, timeout=TIMEOUT_S, cwd=root, check=False,
    )  # fmt: skip
    assert built.returncode == 0, f"wheel build failed (this environment needs setuptools>=77):\n{built.stderr}"
    (wheel,) = (root / "dist").glob("stickyws-*.whl")
    return wheel


def _new_venv(root: Path) -> Venv:
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=TIMEOUT_S)
    python = venv / "bin" / "python"
    site_packages = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True, capture_output=True, text=True, timeout=TIMEOUT_S,
        ).stdout.strip()
    )  # fmt: skip
    return Venv(root, python, site_packages)


def bare_venv(root: Path, wheel: Path) -> Venv:
    """A fresh venv in ``root`` with the wheel installed and no third-party package at all."""
    venv = _new_venv(root)
    subprocess.run(
        [*PIP, "--python", str(venv.python), "install", "--no-deps", "--no-index", str(wheel)],
        check=True, capture_output=True, timeout=TIMEOUT_S, cwd=root,
    )  # fmt: skip
    return venv


def _link_third_party(target: Path) -> int:
    """Symlink every entry of this environment's site-packages into ``target``, except stickyws's own."""
    source = Path(sysconfig.get_paths()["purelib"])
    target.mkdir()
    count = 0
    for entry in source.iterdir():
        if entry.name.startswith(EXCLUDED_PREFIXES) or entry.suffix == ".pth":
            continue
        (target / entry.name).symlink_to(entry)
        count += 1
    return count


def linked_venv(root: Path, wheel: Path) -> Venv:
    """:func:`bare_venv` plus this suite's third-party packages through a ``.pth`` file."""
    venv = bare_venv(root, wheel)
    assert _link_third_party(root / "third_party") > 50
    (venv.site_packages / "third_party.pth").write_text(f"{root / 'third_party'}\n", encoding="utf-8")
    return venv


def resolved_venv(root: Path, wheel: Path, extras: str, pins: list[str]) -> Venv:
    """A fresh venv where pip resolves ``stickyws[extras]`` from the wheel plus ``pins`` against the package index.

    Nothing of this environment is linked: every dependency is the one pip chose. ``--no-compile``
    leaves byte-compiling to the first import (most of aws-cdk-lib is never imported).
    """
    venv = _new_venv(root)
    done = subprocess.run(
        [*PIP, "--python", str(venv.python), "install", "--no-compile", f"stickyws[{extras}] @ {wheel.as_uri()}",
         *pins],
        capture_output=True, text=True, timeout=TIMEOUT_S, cwd=root, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"pip could not resolve or install stickyws[{extras}] with {pins}:\n{done.stderr}"
    return venv


def lower_bounds(wheel: Path, extra: str, names: tuple[str, ...]) -> dict[str, str]:
    """``{name: version}`` of the ``>=`` lower bound of each of ``names`` in ``extra`` of the wheel's METADATA."""
    with zipfile.ZipFile(wheel) as archive:
        (metadata,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        lines = archive.read(metadata).decode().splitlines()
    bounds = {}
    for line in lines:
        if not line.startswith("Requires-Dist: "):
            continue
        requirement = Requirement(line.removeprefix("Requires-Dist: "))
        if requirement.name in names and requirement.marker and requirement.marker.evaluate({"extra": extra}):
            (floor,) = [s.version for s in requirement.specifier if s.operator == ">="]
            bounds[requirement.name] = floor
    assert sorted(bounds) == sorted(names), f"no >= lower bound in [{extra}] for {set(names) - set(bounds)}"
    return bounds


@dataclass(frozen=True)
class Synth:
    """A user project copied into a venv's root and synthesized there."""

    venv: Venv
    project: Path
    outdir: Path
    stack: str
    stdout: str

    @property
    def template_path(self) -> Path:
        return self.outdir / f"{self.stack}.template.json"

    def template(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.template_path.read_text(encoding="utf-8"))
        return data

    def run(self, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        """Run a command in the project folder."""
        return self.venv.run(*args, cwd=self.project, **extra)

    def pytest(self) -> subprocess.CompletedProcess[str]:
        """The project's own pytest file, in the venv, against this synth's template."""
        return self.run(
            str(self.venv.python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_my_stack.py",
            STACK_TEMPLATE=str(self.template_path),
        )  # fmt: skip


def synthesize(venv: Venv, project: str, stack: str) -> Synth:
    """Copy ``tests/packaging/<project>`` into the venv's root and run ``python app.py OUTDIR`` there."""
    folder = venv.root / project
    shutil.copytree(PROJECTS / project, folder)
    outdir = venv.root / f"{project}.out"
    done = venv.run(str(venv.python), "app.py", str(outdir), cwd=folder)
    assert done.returncode == 0, done.stdout + done.stderr
    return Synth(venv, folder, outdir, stack, done.stdout)


def processes_in(*roots: Path) -> list[tuple[str, str]]:
    """``(pid, cwd)`` of every running process whose working folder lies under one of ``roots``."""
    resolved = [root.resolve() for root in roots]
    left = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cwd = (proc / "cwd").resolve(strict=True)
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if any(cwd.is_relative_to(root) for root in resolved):
            left.append((proc.name, str(cwd)))
    return left
