"""My own server's stack, offline in moto, with only the stickyws pytest plugin's fixtures and assertion helper.

``STACK_TEMPLATE`` (environment) names the synthesized template file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from stickyws.testing import MotoDeployment, assert_websocket_ready


@pytest.fixture(scope="session")
def stickyws_template() -> dict[str, Any]:
    """My synthesized template: what the plugin's stickyws_moto deploys into moto."""
    data: dict[str, Any] = json.loads(Path(os.environ["STACK_TEMPLATE"]).read_text(encoding="utf-8"))
    return data


def test_my_node_stack_deployed_into_moto_is_websocket_ready(stickyws_moto: MotoDeployment) -> None:
    """Deployed into moto and read back, my own server's stack passes the audit, judged as my server."""
    result = assert_websocket_ready(stickyws_moto)
    assert result.exit_code == 0
    assert not result.failed()
    elbv2 = stickyws_moto.session.client("elbv2")
    tg_arn = stickyws_moto.physical_id("AWS::ElasticLoadBalancingV2::TargetGroup")
    (group,) = elbv2.describe_target_groups(TargetGroupArns=[tg_arn])["TargetGroups"]
    assert (group["Port"], group["HealthCheckPath"]) == (3000, "/healthz")


def test_my_container_is_told_its_port_only_and_probed_with_node(stickyws_moto: MotoDeployment) -> None:
    """The deployed task runs my node image, told PORT=3000 and nothing else, with no secret and a node probe."""
    ecs = stickyws_moto.session.client("ecs")
    cluster = stickyws_moto.physical_id("AWS::ECS::Cluster")
    service = stickyws_moto.physical_id("AWS::ECS::Service")
    (deployed,) = ecs.describe_services(cluster=cluster, services=[service])["services"]
    task = ecs.describe_task_definition(taskDefinition=deployed["taskDefinition"])["taskDefinition"]
    (container,) = task["containerDefinitions"]
    assert container["image"] == "public.ecr.aws/docker/library/node:20-slim"
    assert container["environment"] == [{"name": "PORT", "value": "3000"}]
    assert container.get("secrets", []) == []
    assert container["dockerLabels"] == {"stickyws.server-mode": "own", "stickyws.server-env": "port=PORT"}
    assert container["healthCheck"]["command"] == [
        "CMD-SHELL",
        "node -e \"fetch('http://127.0.0.1:3000/healthz')"
        '.then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))"',
    ]
