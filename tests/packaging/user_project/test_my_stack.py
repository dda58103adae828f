"""The project's own tests of its stack, offline: only the stickyws pytest plugin's fixtures and assertion helper.

``STACK_TEMPLATE`` (environment) names the synthesized template file.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest

from stickyws.testing import MotoDeployment, NotWebSocketReady, assert_websocket_ready


@pytest.fixture(scope="session")
def stickyws_template() -> dict[str, Any]:
    """My synthesized template: what the plugin's stickyws_moto deploys into moto."""
    data: dict[str, Any] = json.loads(Path(os.environ["STACK_TEMPLATE"]).read_text(encoding="utf-8"))
    return data


def test_my_stack_deployed_into_moto_is_websocket_ready(stickyws_moto: MotoDeployment) -> None:
    """Deployed into moto and read back through boto3, my stack passes every check of the audit."""
    result = assert_websocket_ready(stickyws_moto)
    assert result.exit_code == 0
    assert result.source == f"stack {stickyws_moto.stack_name}"
    elbv2 = stickyws_moto.session.client("elbv2")
    lb_arn = stickyws_moto.physical_id("AWS::ElasticLoadBalancingV2::LoadBalancer")
    attributes = elbv2.describe_load_balancer_attributes(LoadBalancerArn=lb_arn)["Attributes"]
    assert {a["Key"]: a["Value"] for a in attributes}["idle_timeout.timeout_seconds"] == "300"


def test_a_copy_with_http2_on_fails_with_the_audit_table(
    stickyws_deploy: Any, stickyws_template: dict[str, Any]
) -> None:
    """The same stack with HTTP/2 switched on, deployed next to it, fails the assertion naming the http2-off rule."""
    broken = copy.deepcopy(stickyws_template)
    for resource in broken["Resources"].values():
        if resource["Type"] == "AWS::ElasticLoadBalancingV2::LoadBalancer":
            for attribute in resource["Properties"]["LoadBalancerAttributes"]:
                if attribute["Key"] == "routing.http2.enabled":
                    attribute["Value"] = "true"
    with pytest.raises(NotWebSocketReady) as caught:
        assert_websocket_ready(stickyws_deploy(broken, "Http2On"))
    assert "http2-off" in caught.value.audit.failed()
    assert "stickyws audit of stack Http2On" in str(caught.value)
