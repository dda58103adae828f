"""`stickyws audit` against moto's server mode: boto3 finds endpoint, credentials and region in the environment.

A ThreadedMotoServer listens on 127.0.0.1 and a free port; the reference stack (and a broken copy)
are deployed into it over HTTP, then the real CLI runs, in-process and as a separate `stickyws`
process, with nothing but environment variables pointing it there (AWS_ENDPOINT_URL and fakes).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from stickyws.audit.checks import catalog
from stickyws.cli import main
from stickyws.localproc import free_port
from stickyws.testing.aws_env import fake_aws_environment
from stickyws.testing.moto_compat import deploy
from tests.audit.edits import MUTATIONS

pytestmark = [pytest.mark.synth, pytest.mark.filterwarnings("ignore:Tried to parse AWS::")]

BROKEN = next(m for m in MUTATIONS if m.name == "stickiness-off")


@dataclass(frozen=True)
class Server:
    """The running moto server and what was deployed into it."""

    url: str
    load_balancer_arn: str


@pytest.fixture(scope="module")
def server(reference_template_json: dict[str, Any]) -> Iterator[Server]:
    """moto in server mode on loopback with the reference stack ("Good") and a broken copy ("Broken")."""
    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    try:
        url = f"http://127.0.0.1:{port}"
        with pytest.MonkeyPatch.context() as mp:
            fake_aws_environment(mp)
            mp.setenv("AWS_ENDPOINT_URL", url)
            session = boto3.Session()
            physical = deploy(session, reference_template_json, "Good")
            deploy(session, BROKEN.edit(reference_template_json), "Broken")
            types = {k: r["Type"] for k, r in reference_template_json["Resources"].items()}
            lb_arn = next(p for k, p in physical.items() if types[k] == "AWS::ElasticLoadBalancingV2::LoadBalancer")
            yield Server(url, lb_arn)
    finally:
        moto.stop()


@pytest.fixture
def env_to_server(server: Server, monkeypatch: pytest.MonkeyPatch) -> Server:
    """Point this test's environment (and so boto3) at the moto server; no --region needed."""
    fake_aws_environment(monkeypatch)
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)
    return server


def test_reference_stack_through_the_server_exits_0(env_to_server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI reads the deployed reference stack from the server and every check passes but the registry's
    (moto's CloudFormation cannot create it)."""
    code = main(["audit", "--stack-name", "Good"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith("stickyws audit of stack Good\n")
    assert out.rstrip().endswith(f"{len(catalog()) - 1} pass, 1 warn, 0 fail (exit 0)")


def test_load_balancer_arn_through_the_server_exits_0(env_to_server: Server) -> None:
    """--load-balancer-arn finds the target group and, by scanning ECS, the service, and passes."""
    assert main(["audit", "--load-balancer-arn", env_to_server.load_balancer_arn, "--json"]) == 0


def test_missing_stack_through_the_server_exits_2(env_to_server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    """A stack the server does not know exits 2 with CloudFormation's reason on one line."""
    code = main(["audit", "--stack-name", "Missing"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("stickyws: cannot list the resources of stack Missing: ValidationError: ")
    assert err.count("\n") == 1


def test_stickyws_process_exit_codes(env_to_server: Server) -> None:
    """The installed `stickyws` entry point, in its own process, exits 1 for the broken stack and 0 for the good one."""
    script = Path(sys.executable).with_name("stickyws")
    env = dict(os.environ)
    broken = subprocess.run(
        [str(script), "audit", "--stack-name", "Broken"], env=env, capture_output=True, text=True, timeout=60
    )
    assert broken.returncode == 1, broken.stderr
    assert any(line.startswith("fail  stickiness: ") for line in broken.stdout.splitlines())
    good = subprocess.run(
        [str(script), "audit", "--stack-name", "Good"], env=env, capture_output=True, text=True, timeout=60
    )
    assert (good.returncode, good.stderr) == (0, "")
    assert BROKEN.failing == {"stickiness", "app-settings-match"}
