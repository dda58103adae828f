"""The compiled wheel (setup.py with STICKYWS_MYPYC=1, as the image builds it): what it holds, and that a server
installed from it runs the compiled build and commits a message exactly once."""

from __future__ import annotations

import asyncio
import importlib.machinery
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import aiohttp
import mypy.version
import pytest

import stickyws
from stickyws import compiled, protocol
from stickyws.localproc import free_port, stop_pid, wait_for_port
from stickyws.settings import ENV_JWT_SECRET
from tests.packaging.venvs import REPO_ROOT, TIMEOUT_S, Venv, linked_venv
from tests.server.helpers import SECRET, token

# Its own group: the build runs on one worker while the other packaging tests run on another.
pytestmark = [pytest.mark.packaging, pytest.mark.xdist_group("compiled-wheel")]

BUILD_TIMEOUT_S = 900


def _current_wheel() -> Path | None:
    """The wheel `make compiled` left in build/compiled/ when it was built from the sources as they are now."""
    wheels = list((REPO_ROOT / "build" / "compiled").glob("stickyws-*.whl"))
    if len(wheels) != 1:
        return None
    with zipfile.ZipFile(wheels[0]) as archive:
        if "stickyws/compiled.json" not in archive.namelist():
            return None
        record = json.loads(archive.read("stickyws/compiled.json"))
    return wheels[0] if record == compiled.manifest(record["compiler"], REPO_ROOT / "stickyws") else None


@pytest.fixture(scope="module")
def compiled_wheel() -> Path:
    """The compiled wheel of this checkout: the one `make compiled` built (make test runs it first) when it is
    current, else built here (scripts/build_compiled.py --wheel-only, reusing the objects in build/)."""
    wheel = _current_wheel()
    if wheel is not None:
        return wheel
    built = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "build_compiled.py"), "--wheel-only"],
        capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False,
    )  # fmt: skip
    assert built.returncode == 0, f"{built.stdout[-3000:]}\n{built.stderr[-6000:]}"
    wheel = _current_wheel()
    assert wheel is not None, "the build left no current wheel in build/compiled/"
    return wheel


@pytest.fixture(scope="module")
def compiled_venv(compiled_wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """A fresh venv with the compiled wheel and this suite's third-party packages."""
    return linked_venv(tmp_path_factory.mktemp("compiled-wheel"), compiled_wheel)


def test_the_wheel_is_a_platform_wheel_with_every_module_compiled_and_every_source(compiled_wheel: Path) -> None:
    """The wheel is tagged for this interpreter and platform and holds an extension of every compiled module,
    mypyc's shared library, each module's source (the fallback) and a record of exactly these sources."""
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    version = f"cp{sys.version_info.major}{sys.version_info.minor}"
    assert compiled_wheel.name.startswith(f"stickyws-{stickyws.__version__}-{version}-{version}-linux_")
    with zipfile.ZipFile(compiled_wheel) as archive:
        names = set(archive.namelist())
        record = json.loads(archive.read("stickyws/compiled.json"))
    stems = [path.removesuffix(".py") for path in compiled.SOURCES]
    assert {f"{stem}{suffix}" for stem in stems} <= names
    assert f"stickyws/native__mypyc{suffix}" in names
    assert set(compiled.SOURCES) <= names
    assert record == compiled.manifest(record["compiler"], REPO_ROOT / "stickyws")
    assert record["compiler"].startswith("mypyc ")


def test_a_server_from_the_compiled_wheel_runs_compiled_and_commits_exactly_once(compiled_venv: Venv) -> None:
    """`stickyws --version` and the server's start line name the compiled build; a message sent twice under the
    same id is answered once and acknowledged as a duplicate the second time."""
    version = compiled_venv.run("stickyws", "--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith(f"stickyws {stickyws.__version__} (compiled (mypyc ")
    port = free_port()
    env = compiled_venv.env(**{ENV_JWT_SECRET: SECRET, "STICKYWS_SERVER_ID": "compiled-1"})
    proc = subprocess.Popen(
        [str(compiled_venv.python.parent / "stickyws"), "serve", "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for_port(port, 15)
        frames = asyncio.run(asyncio.wait_for(_send_twice(port), TIMEOUT_S))
    finally:
        stop_pid(proc)
    err = proc.stderr.read() if proc.stderr else ""
    assert "Traceback" not in err
    assert "build: compiled (mypyc " in err
    assert frames == [
        {"type": "message", "seq": 1, "data": "hello"},
        {"type": "ack", "id": 1},
        {"type": "ack", "id": 1, "duplicate": True},
    ]


async def _send_twice(port: int) -> list[dict[str, object]]:
    """Send message 1 twice; every frame up to each acknowledgement."""
    url = f"ws://127.0.0.1:{port}{protocol.WS_PATH}?token={token('alice')}"
    got: list[dict[str, object]] = []
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        assert json.loads((await ws.receive(timeout=5)).data)["type"] == "connected"
        for sent in (1, 2):
            await ws.send_str(json.dumps({"type": "send", "id": 1, "data": "hello"}))
            while sum(frame["type"] == "ack" for frame in got) < sent:
                got.append(json.loads((await ws.receive(timeout=5)).data))
    return got


def test_the_dockerfile_builds_the_compiled_wheel_and_refuses_an_image_that_would_not_run_it(
    compiled_venv: Venv,
) -> None:
    """The image's build stage builds stickyws as this suite's compiled wheel is built (STICKYWS_MYPYC=1, no build
    isolation, its dependencies and mypy installed first), and the final stage's check, run here in a venv with
    that wheel, imports every compiled module and passes; on the Python sources it fails."""
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    build_stage, final_stage = dockerfile.split("\nFROM ", 2)[1:]
    assert "apt-get install -y --no-install-recommends gcc libc6-dev" in build_stage
    assert 'pip install --no-cache-dir -c constraints.txt mypy setuptools ".[server]"' in build_stage
    assert (
        "STICKYWS_MYPYC=1 pip wheel --no-cache-dir --no-build-isolation --no-deps --wheel-dir /wheels ." in build_stage
    )
    check = re.search(r'python -c "([^"]+)"', final_stage)
    assert check is not None
    ran = compiled_venv.run(str(compiled_venv.python), "-c", check.group(1))
    assert (ran.returncode, ran.stdout, ran.stderr) == (0, f"compiled (mypyc {mypy.version.__version__})\n", "")
    pure = compiled_venv.run(str(compiled_venv.python), "-c", check.group(1), STICKYWS_PURE_PYTHON="1")
    assert (pure.returncode, pure.stdout, pure.stderr) == (1, "pure Python (STICKYWS_PURE_PYTHON=1)\n", "")
