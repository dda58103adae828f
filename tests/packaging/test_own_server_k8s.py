"""From the installed wheel: the project with its OWN server (a Node image) renders its Kubernetes manifests
with ``stickyws k8s render`` and audits them with ``stickyws audit --k8s``.

The project folder (``own_server_project/``, with its settings in ``k8s.toml``) is copied outside the
checkout; both commands run there with the installed venv's ``stickyws``, nothing of this checkout on
the path.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.packaging.venvs import PROJECTS, Venv, processes_in

pytestmark = [pytest.mark.packaging, pytest.mark.xdist_group("packaging")]

IMAGE = "public.ecr.aws/docker/library/node:20-slim"
NAME = "my-node-ws"


@pytest.fixture(scope="module")
def project(installed: Venv) -> Path:
    """A copy of the own-server project in the installed venv's root (a folder name of its own)."""
    folder = installed.root / "own_server_project_k8s"
    shutil.copytree(PROJECTS / "own_server_project", folder)
    return folder


@pytest.fixture(scope="module")
def rendered(installed: Venv, project: Path) -> Path:
    """The manifests ``stickyws k8s render`` prints for the project's settings and image, saved as a file."""
    done = installed.run(
        "stickyws", "k8s", "render", "--settings-file", "k8s.toml", "--image", IMAGE, "--name", NAME, cwd=project
    )
    assert done.returncode == 0, done.stdout + done.stderr
    path = project / "manifests.yaml"
    path.write_text(done.stdout, encoding="utf-8")
    return path


def _objects(path: Path) -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc}


def test_the_deployment_runs_the_node_image_told_only_its_variables_with_a_sleep_prestop(rendered: Path) -> None:
    """The Deployment runs node:20-slim on port 3000, told PORT, DRAIN_WINDOW_S and SHUTDOWN_TIMEOUT_S only; its
    preStop hook is a 15 s sleep (no drain-self: not the reference server) inside a 90 s grace period."""
    objects = _objects(rendered)
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == IMAGE
    assert [p["containerPort"] for p in container["ports"]] == [3000]
    assert {e["name"]: e["value"] for e in container["env"]} == {
        "PORT": "3000",
        "DRAIN_WINDOW_S": "30",
        "SHUTDOWN_TIMEOUT_S": "10",
    }
    assert container["lifecycle"] == {"preStop": {"sleep": {"seconds": 15}}}
    assert pod["terminationGracePeriodSeconds"] == 90
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    text = rendered.read_text(encoding="utf-8")
    assert "drain-self" not in text
    assert "STICKYWS_" not in text


def test_the_audit_of_the_rendered_manifests_passes(installed: Venv, project: Path, rendered: Path) -> None:
    """`stickyws audit --k8s` of what render printed finds the own server's variables and fails nothing (exit 0)."""
    done = installed.run("stickyws", "audit", "--k8s", rendered.name, cwd=project)
    assert done.returncode == 0, done.stdout + done.stderr
    report = done.stdout.splitlines()
    assert report[1].startswith("server: your own (server_mode=own), told port as PORT")
    assert report[-1].endswith("0 fail (exit 0)")


def test_the_audit_fails_the_same_chart_with_a_prestop_shorter_than_the_propagation(
    installed: Venv, project: Path, rendered: Path
) -> None:
    """Edited the way hand-kept charts are (a 3 s preStop sleep), the manifests fail the rule
    k8s-prestop-covers-propagation, with the fix and where in the manifests it goes (exit 1)."""
    short = project / "short-prestop.yaml"
    text = rendered.read_text(encoding="utf-8")
    assert text.count("seconds: 15") == 1
    short.write_text(text.replace("seconds: 15", "seconds: 3"), encoding="utf-8")
    done = installed.run("stickyws", "audit", "--k8s", short.name, cwd=project)
    assert done.returncode == 1, done.stdout + done.stderr
    fails = [line for line in done.stdout.splitlines() if line.startswith("fail ")]
    assert [line.split(":")[0] for line in fails] == ["fail  k8s-prestop-covers-propagation"]
    flat = " ".join(done.stdout.split())
    assert "pre_stop_delay_s=3 < deregistration_propagation_s=10" in flat
    assert "fix: set pre_stop_delay_s >= 10" in flat
    assert "lifecycle.preStop" in flat


def test_no_process_is_left_running_in_the_project(project: Path, rendered: Path) -> None:
    """Render and audit leave no process running in the project's folder."""
    assert processes_in(project) == []
