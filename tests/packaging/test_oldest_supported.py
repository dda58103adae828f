"""The oldest supported versions: a user project resolves from the package index with aws-cdk-lib at its floor
and pytest 8, synthesizes, and its moto tests pass with the plugin.

The ``oldest`` venv (``conftest.py``) lets pip resolve ``stickyws[cdk,testing]`` from the built
wheel with aws-cdk-lib, constructs, cdk-nag and pytest pinned to the lower bounds the wheel's
metadata declares: what an existing app pinned to those versions gets. The own-server project
synthesizes there too.
"""

from __future__ import annotations

import pytest
from packaging.version import Version

from tests.packaging.venvs import Synth, Venv, processes_in, synthesize

pytestmark = [pytest.mark.packaging, pytest.mark.synth, pytest.mark.xdist_group("packaging")]

STACK = "MyWebSocketApp"


@pytest.fixture(scope="module")
def oldest_app(oldest: Venv) -> Synth:
    """The user project synthesized in the oldest-supported venv."""
    return synthesize(oldest, "user_project", STACK)


def test_the_floors_resolve_together_with_pytest_8(oldest: Venv, oldest_pins: dict[str, str]) -> None:
    """pip installed exactly the lower bounds: aws-cdk-lib's floor (2.269.0 or later), its cdk-nag and pytest 8."""
    found = {name: Version(version) for name, version in oldest.versions(*oldest_pins).items()}
    assert found == {name: Version(version) for name, version in oldest_pins.items()}
    assert found["pytest"].major == 8
    assert found["aws-cdk-lib"] >= Version("2.269.0")


def test_the_user_project_synthesizes_and_audits_clean_with_the_oldest_aws_cdk_lib(oldest_app: Synth) -> None:
    """The template synthesized with the floor aws-cdk-lib has the service, the rule and the registry, and passes
    `stickyws audit --template`."""
    types = {resource["Type"] for resource in oldest_app.template()["Resources"].values()}
    assert {"AWS::ECS::Service", "AWS::ElasticLoadBalancingV2::ListenerRule", "AWS::ElastiCache::UserGroup"} <= types
    done = oldest_app.run("stickyws", "audit", "--template", str(oldest_app.template_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.rstrip().endswith("0 fail (exit 0)")


def test_the_users_moto_tests_pass_with_pytest_8(oldest_app: Synth) -> None:
    """pytest 8 loads the plugin through its entry point and the user's moto tests pass (2 passed)."""
    done = oldest_app.pytest()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout


def test_the_own_server_project_synthesizes_with_the_oldest_aws_cdk_lib(oldest: Venv) -> None:
    """The own-server constructs (health check choice, scaling on the stack's metric) synthesize at the floor too."""
    own = synthesize(oldest, "own_server_project", "MyNodeWebSocketApp")
    resources = own.template()["Resources"].values()
    (task,) = [r["Properties"] for r in resources if r["Type"] == "AWS::ECS::TaskDefinition"]
    assert task["ContainerDefinitions"][0]["Environment"] == [{"Name": "PORT", "Value": "3000"}]
    (policy,) = [r["Properties"] for r in resources if r["Type"] == "AWS::ApplicationAutoScaling::ScalingPolicy"]
    metric = policy["TargetTrackingScalingPolicyConfiguration"]["CustomizedMetricSpecification"]
    assert metric["MetricName"] == "OpenSocketsPerTask"


def test_no_process_is_left_running_in_the_oldest_venv(oldest: Venv, oldest_app: Synth) -> None:
    """Every process these tests started has exited: none runs in the oldest venv's folder."""
    assert processes_in(oldest.root) == []
