"""``stickyws k8s render`` prints the rendered manifests as YAML, and refuses bad input in one line with exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from stickyws.cli import main
from stickyws.k8s import WebSocketApp, render
from stickyws.k8s.yaml_io import load_documents
from stickyws.settings import Settings


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["k8s", "render", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_render_prints_the_documents_render_returns(capsys: pytest.CaptureFixture[str]) -> None:
    """The YAML on stdout reads back as exactly the documents of render() for the same settings and options."""
    code, out, err = _run(["-c", "idle_timeout_s=300", "--api", "gateway", "--image", "me/ws:2", "--internal"], capsys)
    assert (code, err) == (0, "")
    settings = Settings().with_overrides({"idle_timeout_s": 300, "k8s_api": "gateway"})
    expected = render(WebSocketApp(settings, image="me/ws:2", internet_facing=False)).documents
    assert load_documents(out) == list(expected)
    assert out.count("\n---\n") == len(expected) - 1


def test_settings_file_then_single_settings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--settings-file applies first, -c on top of it."""
    path = tmp_path / "ws.toml"
    path.write_text('k8s_namespace = "chat"\nreplicas = 4\nmax_replicas = 8\n', encoding="utf-8")
    code, out, _ = _run(["--settings-file", str(path), "-c", "replicas=5"], capsys)
    deployment = load_documents(out)[1]
    assert (code, deployment["metadata"]["namespace"], deployment["spec"]["replicas"]) == (0, "chat", 5)


def test_a_settings_error_is_one_line_per_finding_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """A grace period too short for the drain prints the rule and its fix, nothing on stdout, exit 2."""
    code, out, err = _run(["-c", "termination_grace_period_s=30"], capsys)
    assert (code, out) == (2, "")
    assert err.startswith("stickyws: 1 settings error(s):\n  - [k8s-grace-covers-drain] termination_grace_period_s=30")
    assert "-> set termination_grace_period_s >= 70" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-c", "server_mode=own"], "stickyws: server_mode=own needs --image: the image of your server\n"),
        (["-c", "idle_timeout"], "stickyws: -c 'idle_timeout': use NAME=VALUE, e.g. -c idle_timeout_s=300\n"),
        (["--name", "Chat"], "stickyws: name 'Chat' is not a DNS label: use lower-case letters, digits and '-'\n"),
    ],
)
def test_bad_command_lines_are_one_line(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Own server without an image, a -c without '=' and a bad name: one line each, exit 2."""
    assert _run(argv, capsys) == (2, "", message)


def test_unknown_setting_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    """A misspelt setting is refused with the closest names."""
    code, out, err = _run(["-c", "pre_stop_delay=5"], capsys)
    assert (code, out) == (2, "")
    assert "pre_stop_delay" in err
    assert "did you mean pre_stop_delay_s" in err


def test_warnings_go_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    """A rollout that may stop pods before their replacements exist renders, with the warning on stderr."""
    code, out, err = _run(["-c", "max_unavailable_percent=25"], capsys)
    assert code == 0
    assert load_documents(out)[1]["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == "25%"
    assert err.startswith("stickyws: warning: [k8s-rollout] max_unavailable_percent=25:")


def test_the_installed_command_renders() -> None:
    """`python -m stickyws k8s render` runs as its own process and prints YAML the loader reads back."""
    done = subprocess.run(
        [sys.executable, "-m", "stickyws", "k8s", "render", "--api", "ingress"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert [d["kind"] for d in load_documents(done.stdout)] == [
        "Namespace",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "Ingress",
    ]
