"""From a built wheel, outside the repository: a user's CDK app synthesizes, audits clean and tests itself in moto.

The session fixtures of ``conftest.py`` build the wheel once and install it into a fresh venv
outside the checkout (``installed``: its third-party packages linked from this suite's
environment, see ``venvs.py``). There the user project of ``user_project/`` synthesizes,
``stickyws audit --template`` judges its template, and pytest runs its test file, which uses only
the stickyws plugin's fixtures. The default server image is staged from the installed package.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

import stickyws
from tests.packaging.venvs import PIP, REPO_ROOT, TIMEOUT_S, Synth, Venv, processes_in, synthesize

pytestmark = [pytest.mark.packaging, pytest.mark.synth, pytest.mark.xdist_group("packaging")]

STACK = "MyWebSocketApp"
WHEEL_NAME = f"stickyws-{stickyws.__version__}-py3-none-any.whl"


@pytest.fixture(scope="module")
def user_app(installed: Venv) -> Synth:
    """The user project synthesized in the installed venv (no ``image=``: the default image)."""
    return synthesize(installed, "user_project", STACK)


@pytest.fixture(scope="module")
def probe(user_app: Synth) -> dict[str, Any]:
    """Where the user app found stickyws and constructs_lib, as the one JSON line it printed last."""
    data: dict[str, Any] = json.loads(user_app.stdout.strip().splitlines()[-1])
    return data


def test_wheel_holds_both_packages_the_data_and_the_metadata(wheel: Path) -> None:
    """The wheel ships both packages with py.typed, the Lambda source, the Dockerfile and PEP 621 metadata."""
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = f"stickyws-{stickyws.__version__}.dist-info"
        metadata = archive.read(f"{info}/METADATA").decode()
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
    assert wheel.name == WHEEL_NAME
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
        "server", "cdk", "testing", "k8s", "dev", "bench", "examples",
    }  # fmt: skip
    assert "[pytest11]\nstickyws = stickyws.testing.plugin" in entry_points


def test_nothing_from_the_checkout_is_on_the_venv_path(installed: Venv, probe: dict[str, Any]) -> None:
    """The user app imported stickyws and constructs_lib from the venv, with no checkout path or editable finder."""
    for package in ("stickyws", "constructs_lib"):
        assert Path(probe[package]).parent == installed.site_packages / package
    assert Path(probe["distribution"]) == installed.site_packages  # the wheel's metadata and entry points
    assert not [p for p in probe["sys_path"] if p and Path(p).resolve().is_relative_to(REPO_ROOT)]
    shadowing = [p for p in probe["sys_path"] if p and (Path(p) / "stickyws").exists()]
    assert shadowing == [str(installed.site_packages)]
    assert not [m for m in probe["modules"] if m.startswith("__editable__")]
    assert not [m for m in probe["modules"] if m.startswith("stickyws.audit")], "constructs_lib imported the auditor"


def test_synth_stages_the_lambda_from_the_installed_packages(installed: Venv, user_app: Synth) -> None:
    """The drain-notifier bundle holds the wheel's handler modules and redis, byte for byte as installed."""
    manifest = json.loads((user_app.outdir / f"{STACK}.assets.json").read_text(encoding="utf-8"))
    bundles = [
        user_app.outdir / asset["source"]["path"]
        for asset in manifest["files"].values()
        if (user_app.outdir / asset["source"]["path"] / "stickyws" / "drain_notifier.py").is_file()
    ]
    assert len(bundles) == 1
    handler = bundles[0] / "stickyws"
    assert sorted(p.name for p in handler.iterdir()) == [
        "__init__.py",
        "compiled.py",
        "drain_notifier.py",
        "keys.py",
        "registry_auth.py",
    ]
    for name in ("__init__.py", "compiled.py", "drain_notifier.py", "keys.py", "registry_auth.py"):
        assert (handler / name).read_bytes() == (installed.site_packages / "stickyws" / name).read_bytes()
    assert (bundles[0] / "redis" / "__init__.py").is_file()


@pytest.fixture(scope="module")
def image_context(user_app: Synth) -> tuple[Path, dict[str, Any]]:
    """The default image's staged build context in the cloud assembly, and its manifest entry."""
    manifest = json.loads((user_app.outdir / f"{STACK}.assets.json").read_text(encoding="utf-8"))
    (image,) = manifest["dockerImages"].values()
    return user_app.outdir / image["source"]["directory"], image


def test_the_default_image_installs_the_installed_stickyws_from_its_build_context(
    installed: Venv, image_context: tuple[Path, dict[str, Any]]
) -> None:
    """The staged context is the packaged Dockerfile and a wheel of the installed files; the build argument names
    that wheel inside the image with the [server] extra, never stickyws by name from a package index."""
    context, image = image_context
    assert sorted(p.name for p in context.iterdir()) == ["Dockerfile", WHEEL_NAME]
    packaged = installed.site_packages / "constructs_lib" / "container" / "Dockerfile"
    dockerfile = (context / "Dockerfile").read_text(encoding="utf-8")
    assert dockerfile == packaged.read_text(encoding="utf-8")
    requirement = f"/tmp/stickyws-context/{WHEEL_NAME}[server]"
    assert image["source"]["dockerBuildArgs"] == {"STICKYWS_REQUIREMENT": requirement}
    assert "\nCOPY . /tmp/stickyws-context/\n" in dockerfile
    installs = [line.strip() for line in dockerfile.splitlines() if "pip install" in line]
    assert installs == ['&& pip install --no-cache-dir "$STICKYWS_REQUIREMENT" \\']
    assert image["source"]["platform"] == "linux/amd64"


def test_the_staged_wheel_holds_the_built_wheels_files_byte_for_byte(
    wheel: Path, image_context: tuple[Path, dict[str, Any]]
) -> None:
    """Re-packed from the installation, the staged wheel has every file of the built wheel with the same bytes
    (both packages, METADATA with its extras, entry points, license); only RECORD is written anew."""
    context, _ = image_context
    with zipfile.ZipFile(wheel) as built, zipfile.ZipFile(context / WHEEL_NAME) as staged:
        assert sorted(staged.namelist()) == sorted(built.namelist())
        record = f"stickyws-{stickyws.__version__}.dist-info/RECORD"
        differing = [n for n in built.namelist() if n != record and built.read(n) != staged.read(n)]
        assert staged.testzip() is None
        rows = {line.split(",")[0] for line in staged.read(record).decode().splitlines()}
        assert rows == set(built.namelist())
    assert differing == []
    assert any(n.startswith("stickyws/server/") for n in rows)


def test_the_staged_wheel_is_the_same_on_every_synth_and_pip_installs(
    installed: Venv, image_context: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    """Staged again it has the same bytes (the asset hash holds), and pip installs it: its console script runs."""
    context, _ = image_context
    script = (
        "import pathlib, sys; from constructs_lib.image import repack_installed; "
        "print(repack_installed(pathlib.Path(sys.argv[1])))"
    )
    again = installed.run(str(installed.python), "-c", script, str(tmp_path))
    assert again.returncode == 0, again.stderr
    assert Path(again.stdout.strip()).read_bytes() == (context / WHEEL_NAME).read_bytes()
    venv = tmp_path / "from-staged"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=TIMEOUT_S)
    done = subprocess.run(
        [*PIP, "--python", str(venv / "bin" / "python"), "install", "--no-deps", "--no-index",
         str(context / WHEEL_NAME)],
        capture_output=True, text=True, timeout=TIMEOUT_S, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    version = subprocess.run(
        [str(venv / "bin" / "stickyws"), "--version"], capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )
    assert (version.returncode, version.stdout) == (
        0,
        f"stickyws {stickyws.__version__} (pure Python (not compiled))\n",
    )


def test_the_template_passes_stickyws_audit(user_app: Synth) -> None:
    """`stickyws audit --template` (the venv's console script) exits 0 on the user app's template."""
    done = user_app.run("stickyws", "audit", "--template", str(user_app.template_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.rstrip().endswith("0 fail (exit 0)")


def test_the_users_pytest_file_deploys_into_moto_with_the_plugin_and_passes(user_app: Synth) -> None:
    """pytest in the venv loads the plugin through its entry point and the user's moto tests pass (2 passed)."""
    done = user_app.pytest()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout


def test_without_extras_the_template_audit_runs_and_live_commands_name_their_extra(
    core_only: Venv, user_app: Synth
) -> None:
    """With no extra, `stickyws audit --template` passes; `--stack-name` and `serve` say which extra to install."""
    audited = core_only.run("stickyws", "audit", "--template", str(user_app.template_path))
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


def test_no_process_is_left_running_in_the_venv_folders(installed: Venv, core_only: Venv) -> None:
    """Every process these tests started (synth, jsii's node, pytest, the CLI) has exited: none runs in there."""
    assert processes_in(installed.root, core_only.root) == []
