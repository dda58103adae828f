"""From a built wheel, outside the repository: a user's CDK app synthesizes, audits clean and tests itself in moto.

One module fixture does the slow part once: it builds the wheel from a copy of the sources, makes a
fresh venv in a temporary folder outside the checkout and installs the wheel there with
``pip install --no-deps``. The third-party packages (aws-cdk-lib, moto, ...) come from this
suite's own environment through a ``.pth`` file naming a directory of symlinks to its
site-packages entries, minus stickyws, constructs_lib and the editable-install finder: the same
files PyPI would give, without a 700 MB download. Then, in that venv, the user project of
``user_project/`` synthesizes, ``stickyws audit --template`` judges its template, and pytest runs
its test file, which uses only the stickyws plugin's fixtures.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import stickyws

pytestmark = [pytest.mark.packaging, pytest.mark.synth]

REPO_ROOT = Path(__file__).resolve().parents[2]
USER_PROJECT = Path(__file__).resolve().parent / "user_project"
#: What the wheel is built from (copied, so the build writes nothing into the checkout).
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "stickyws", "constructs_lib")
#: Entries of this environment's site-packages that the fresh venv must NOT see.
EXCLUDED_PREFIXES = ("stickyws", "constructs_lib", "__editable__", "_distutils_hack", "__pycache__")
STACK = "MyWebSocketApp"
TIMEOUT_S = 240


@dataclass(frozen=True)
class Installed:
    """The fresh venv with the wheel installed, and what the user project did in it."""

    root: Path
    python: Path
    site_packages: Path
    wheel: Path
    outdir: Path
    probe: Mapping[str, Any]

    def env(self, **extra: str) -> dict[str, str]:
        """An environment with only the venv's bin and node on PATH and nothing on PYTHONPATH."""
        node = shutil.which("node")
        assert node is not None, "node is needed by aws-cdk-lib (jsii)"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "PYTEST"))}
        env["PATH"] = os.pathsep.join([str(self.python.parent), str(Path(node).parent), "/usr/bin", "/bin"])
        env["PYTHONNOUSERSITE"] = "1"
        env["JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION"] = "20"
        env.update(extra)
        return env

    def run(self, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        """Run a command in the project folder with :meth:`env`."""
        return subprocess.run(
            list(args), cwd=self.root / "project", env=self.env(**extra), capture_output=True, text=True,
            timeout=TIMEOUT_S, check=False,
        )  # fmt: skip


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


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """Build the wheel, install it into a fresh venv outside the checkout, synthesize the user project there."""
    root = tmp_path_factory.mktemp("installed-wheel")
    assert not root.resolve().is_relative_to(REPO_ROOT)

    src = root / "src"
    src.mkdir()
    for name in SOURCES:
        path = REPO_ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", "--quiet"]
    built = subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", str(root / "dist"), str(src)],
        capture_output=True, text=True, timeout=TIMEOUT_S, cwd=root, check=False,
    )  # fmt: skip
    assert built.returncode == 0, f"wheel build failed (this environment needs setuptools>=77):\n{built.stderr}"
    (wheel,) = (root / "dist").glob("stickyws-*.whl")

    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=TIMEOUT_S)
    python = venv / "bin" / "python"
    subprocess.run(
        [*pip, "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)],
        check=True, capture_output=True, timeout=TIMEOUT_S, cwd=root,
    )  # fmt: skip
    site_packages = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True, capture_output=True, text=True, timeout=TIMEOUT_S,
        ).stdout.strip()
    )  # fmt: skip
    assert _link_third_party(root / "third_party") > 50
    (site_packages / "third_party.pth").write_text(f"{root / 'third_party'}\n", encoding="utf-8")
    shutil.copytree(USER_PROJECT, root / "project")

    result = Installed(root, python, site_packages, wheel, root / "cdk.out", {})
    synth = result.run(str(python), "app.py", str(result.outdir))
    assert synth.returncode == 0, synth.stdout + synth.stderr
    probe = json.loads(synth.stdout.strip().splitlines()[-1])
    return Installed(root, python, site_packages, wheel, result.outdir, probe)


def test_wheel_holds_both_packages_the_data_and_the_metadata(installed: Installed) -> None:
    """The wheel ships both packages with py.typed, the Lambda source, the Dockerfile and PEP 621 metadata."""
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = set(wheel.namelist())
        info = f"stickyws-{stickyws.__version__}.dist-info"
        metadata = wheel.read(f"{info}/METADATA").decode()
        entry_points = wheel.read(f"{info}/entry_points.txt").decode()
    assert {
        "stickyws/py.typed",
        "constructs_lib/py.typed",
        "stickyws/drain_notifier.py",
        "stickyws/testing/plugin.py",
        "stickyws/settings/aws_names.py",
        "constructs_lib/container/Dockerfile",
        f"{info}/licenses/LICENSE",
    } <= names
    assert not any(n.startswith(("tests/", "stacks/", "bench/")) for n in names)
    assert f"Version: {stickyws.__version__}" in metadata
    assert "License-Expression: Apache-2.0" in metadata
    assert "Project-URL: Source, " in metadata
    assert "Classifier: Typing :: Typed" in metadata
    assert {line.split(": ", 1)[1] for line in metadata.splitlines() if line.startswith("Provides-Extra: ")} == {
        "server", "cdk", "testing", "dev", "bench", "examples",
    }  # fmt: skip
    assert "[pytest11]\nstickyws = stickyws.testing.plugin" in entry_points


def test_nothing_from_the_checkout_is_on_the_venv_path(installed: Installed) -> None:
    """The user app imported stickyws and constructs_lib from the venv, with no checkout path or editable finder."""
    probe = installed.probe
    for package in ("stickyws", "constructs_lib"):
        assert Path(probe[package]).parent == installed.site_packages / package
    assert Path(probe["distribution"]) == installed.site_packages  # the wheel's metadata and entry points
    assert not [p for p in probe["sys_path"] if p and Path(p).resolve().is_relative_to(REPO_ROOT)]
    shadowing = [p for p in probe["sys_path"] if p and (Path(p) / "stickyws").exists()]
    assert shadowing == [str(installed.site_packages)]
    assert not [m for m in probe["modules"] if m.startswith("__editable__")]
    assert not [m for m in probe["modules"] if m.startswith("stickyws.audit")], "constructs_lib imported the auditor"


def test_synth_stages_the_lambda_from_the_installed_packages_and_the_packaged_dockerfile(installed: Installed) -> None:
    """The drain-notifier bundle holds the wheel's handler and redis; the image asset is the packaged Dockerfile."""
    manifest = json.loads((installed.outdir / f"{STACK}.assets.json").read_text(encoding="utf-8"))
    (image,) = manifest["dockerImages"].values()
    context = installed.outdir / image["source"]["directory"]
    assert sorted(p.name for p in context.iterdir()) == ["Dockerfile"]
    packaged = installed.site_packages / "constructs_lib" / "container" / "Dockerfile"
    assert (context / "Dockerfile").read_bytes() == packaged.read_bytes()
    requirement = f"stickyws[server]=={stickyws.__version__}"
    assert image["source"]["dockerBuildArgs"] == {"STICKYWS_REQUIREMENT": requirement}
    bundles = [
        installed.outdir / asset["source"]["path"]
        for asset in manifest["files"].values()
        if (installed.outdir / asset["source"]["path"] / "stickyws" / "drain_notifier.py").is_file()
    ]
    assert len(bundles) == 1
    handler = bundles[0] / "stickyws"
    assert sorted(p.name for p in handler.iterdir()) == ["__init__.py", "drain_notifier.py", "keys.py"]
    for name in ("__init__.py", "drain_notifier.py", "keys.py"):
        assert (handler / name).read_bytes() == (installed.site_packages / "stickyws" / name).read_bytes()
    assert (bundles[0] / "redis" / "__init__.py").is_file()


def test_the_template_passes_stickyws_audit(installed: Installed) -> None:
    """`stickyws audit --template` (the venv's console script) exits 0 on the user app's template."""
    done = installed.run("stickyws", "audit", "--template", str(installed.outdir / f"{STACK}.template.json"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.rstrip().endswith("0 fail (exit 0)")


def test_the_users_pytest_file_deploys_into_moto_with_the_plugin_and_passes(installed: Installed) -> None:
    """pytest in the venv loads the plugin through its entry point and the user's moto tests pass (2 passed)."""
    done = installed.run(
        str(installed.python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_my_stack.py",
        STACK_TEMPLATE=str(installed.outdir / f"{STACK}.template.json"),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout


@pytest.fixture(scope="module")
def core_only(installed: Installed, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """The same wheel in a second fresh venv with no third-party package at all (no extra installed)."""
    root = tmp_path_factory.mktemp("core-only")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=TIMEOUT_S)
    python = venv / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet", "--python", str(python),
         "install", "--no-deps", "--no-index", str(installed.wheel)],
        check=True, capture_output=True, timeout=TIMEOUT_S,
    )  # fmt: skip
    (root / "project").mkdir()
    return Installed(root, python, installed.site_packages, installed.wheel, installed.outdir, {})


def test_without_extras_the_template_audit_runs_and_live_commands_name_their_extra(core_only: Installed) -> None:
    """With no extra, `stickyws audit --template` passes; `--stack-name` and `serve` say which extra to install."""
    template = str(core_only.outdir / f"{STACK}.template.json")
    audited = core_only.run("stickyws", "audit", "--template", template)
    assert (audited.returncode, audited.stderr) == (0, "")
    live = core_only.run("stickyws", "audit", "--stack-name", STACK, "--region", "eu-west-1")
    assert (live.returncode, live.stdout) == (2, "")
    assert live.stderr == (
        "stickyws: `audit` needs the Python package 'boto3', which is not installed: pip install 'stickyws[server]'\n"
    )
    serve = core_only.run("stickyws", "serve", "--dev")
    assert serve.returncode == 2
    assert serve.stderr.endswith("which is not installed: pip install 'stickyws[server]'\n")
    assert "Traceback" not in serve.stderr


def test_no_process_is_left_running_in_the_venv_folders(installed: Installed, core_only: Installed) -> None:
    """Every process these tests started (synth, jsii's node, pytest, the CLI) has exited: none runs in there."""
    roots = (installed.root.resolve(), core_only.root.resolve())
    left = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cwd = (proc / "cwd").resolve(strict=True)
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if any(cwd.is_relative_to(root) for root in roots):
            left.append((proc.name, str(cwd)))
    assert left == []
