"""From the installed wheel: a project with its OWN server (a Node image, no Python) uses the constructs.

The project of ``own_server_project/`` (``server_mode=own``, port 3000, health path ``/healthz``,
its own ALB and listener, scaling on a metric the stack defines) synthesizes in the same
installed venv as ``user_project/``; its template carries nothing of the reference server,
``stickyws audit --template`` reports it short with no reference-server row, and its own pytest
file passes against moto with the plugin.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.packaging.venvs import Synth, Venv, processes_in, synthesize

pytestmark = [pytest.mark.packaging, pytest.mark.synth, pytest.mark.xdist_group("packaging")]

STACK = "MyNodeWebSocketApp"
#: Rules that only judge the reference server (scope ``reference_server``) and that a report could name.
REFERENCE_SERVER_SCOPE = "reference_server"


@pytest.fixture(scope="module")
def own_app(installed: Venv) -> Synth:
    """The own-server project synthesized in the installed venv."""
    return synthesize(installed, "own_server_project", STACK)


def _of_type(template: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [r["Properties"] for r in template["Resources"].values() if r["Type"] == kind]


def test_the_task_runs_the_node_image_with_nothing_of_the_reference_server(own_app: Synth) -> None:
    """The container is node:20-slim on port 3000, told only PORT, with no secret, no STICKYWS_* and no python."""
    template = own_app.template()
    (task,) = _of_type(template, "AWS::ECS::TaskDefinition")
    (container,) = task["ContainerDefinitions"]
    assert container["Image"] == "public.ecr.aws/docker/library/node:20-slim"
    assert container["PortMappings"] == [{"ContainerPort": 3000, "Protocol": "tcp"}]
    assert container["Environment"] == [{"Name": "PORT", "Value": "3000"}]
    assert "Secrets" not in container
    assert container["DockerLabels"] == {"stickyws.server-mode": "own", "stickyws.server-env": "port=PORT"}
    text = json.dumps(template)
    assert "STICKYWS_" not in text
    assert "python" not in text
    assert _of_type(template, "AWS::SecretsManager::Secret") == []
    assert container["HealthCheck"]["Command"][0] == "CMD-SHELL"
    assert container["HealthCheck"]["Command"][1].startswith("node -e \"fetch('http://127.0.0.1:3000/healthz')")
    (group,) = _of_type(template, "AWS::ElasticLoadBalancingV2::TargetGroup")
    assert (group["Port"], group["HealthCheckPath"]) == (3000, "/healthz")


def test_the_task_count_follows_the_metric_the_stack_defines(own_app: Synth) -> None:
    """The one scaling policy tracks the project's OpenSocketsPerTask metric at 800, not CPU or ActiveConnections."""
    (policy,) = _of_type(own_app.template(), "AWS::ApplicationAutoScaling::ScalingPolicy")
    config = policy["TargetTrackingScalingPolicyConfiguration"]
    assert config["CustomizedMetricSpecification"] == {
        "MetricName": "OpenSocketsPerTask",
        "Namespace": "MyNodeApp",
        "Statistic": "Average",
    }
    assert config["TargetValue"] == 800


def test_the_audit_is_short_and_judges_no_reference_server_rule(own_app: Synth) -> None:
    """`stickyws audit --template` passes in a few lines naming the own server; every reference-server rule is
    skipped, and none appears in the report."""
    done = own_app.run("stickyws", "audit", "--template", str(own_app.template_path))
    assert done.returncode == 0, done.stdout + done.stderr
    report = done.stdout.splitlines()
    assert len(report) <= 20, done.stdout
    assert report[1] == "server: your own (server_mode=own), told port as PORT"
    assert report[-1].endswith("0 fail (exit 0)")
    as_json = own_app.run("stickyws", "audit", "--template", str(own_app.template_path), "--json")
    results = json.loads(as_json.stdout)["results"]
    reference_rules = {r["rule"]: r["status"] for r in results if REFERENCE_SERVER_SCOPE in r["scopes"]}
    assert reference_rules
    assert set(reference_rules.values()) == {"skip"}
    assert [rule for rule in reference_rules if rule in done.stdout] == []


def test_the_projects_pytest_file_deploys_into_moto_with_the_plugin_and_passes(own_app: Synth) -> None:
    """pytest in the venv loads the plugin and the project's moto tests of its own server pass (2 passed)."""
    done = own_app.pytest()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout


def test_no_process_is_left_running_in_the_installed_venv(installed: Venv, own_app: Synth) -> None:
    """Every process these tests started has exited: none runs in the installed venv's folder."""
    assert processes_in(installed.root) == []
