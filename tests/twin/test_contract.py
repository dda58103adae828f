"""Contract: ONE settings object rendered as the CDK template and as the twin's HAProxy config agrees.

The CDK side is the reference stack's template, synthesized once per test session
(``reference_template_json`` in tests/conftest.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import pytest

from stickyws.settings import Settings, resolve
from stickyws.twin import haproxy_config
from stickyws.twin.cluster import deregistration_delay_s
from stickyws.twin.haproxy_config import Layout, Slot
from tests.cdk_reference import REFERENCE_CONTEXT, load_cdk_context

pytestmark = pytest.mark.synth

LB = "AWS::ElasticLoadBalancingV2::LoadBalancer"
TG = "AWS::ElasticLoadBalancingV2::TargetGroup"


def reference_settings() -> Settings:
    """The settings the reference synth uses: cdk.json's context plus the reference context."""
    return resolve({**load_cdk_context(), **REFERENCE_CONTEXT})


@pytest.fixture(scope="module")
def reference_template(reference_template_json: dict[str, Any]) -> dict[str, Any]:
    """The reference stack's template from the session's one synth (tests/conftest.py)."""
    return dict(reference_template_json)


def _one(template: Mapping[str, Any], kind: str) -> dict[str, Any]:
    found = [r["Properties"] for r in template["Resources"].values() if r["Type"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return dict(found[0])


def _attributes(props: Mapping[str, Any], key: str) -> dict[str, str]:
    return {a["Key"]: str(a["Value"]) for a in props.get(key, [])}


def _seconds(text: str) -> float:
    match = re.fullmatch(r"(\d+)(ms|s)", text)
    assert match, text
    return int(match[1]) / (1000 if match[2] == "ms" else 1)


def _haproxy_facts(text: str) -> dict[str, Any]:
    """What the rendered configuration says, read back from its text."""
    lines = [line.strip() for line in text.splitlines()]
    cookie = next(line.split() for line in lines if line.startswith("cookie "))
    check = next(line.split() for line in lines if line.startswith("http-check send "))
    expect = next(line.split() for line in lines if line.startswith("http-check expect "))
    default = next(line.split() for line in lines if line.startswith("default-server "))
    timeout = {line.split()[1]: _seconds(line.split()[2]) for line in lines if line.startswith("timeout ")}
    return {
        "idle_timeout_s": timeout["tunnel"],
        "cookie_name": cookie[1],
        "cookie_maxlife_s": _seconds(cookie[cookie.index("maxlife") + 1]),
        "cookie_max_age_s": int(re.search(r'"Max-Age=(\d+)"', " ".join(cookie))[1]),  # type: ignore[index]
        "health_check_path": check[check.index("uri") + 1],
        "health_check_matcher": expect[3] if expect[2] == "status" else " ".join(expect[2:]),
        "health_check_interval_s": _seconds(default[default.index("inter") + 1]),
        "health_check_timeout_s": timeout["check"],
        "unhealthy_threshold_count": int(default[default.index("fall") + 1]),
        "healthy_threshold_count": int(default[default.index("rise") + 1]),
    }


def contract_mismatches(template: Mapping[str, Any], settings: Settings) -> list[str]:
    """Names of the contract values on which the template and the twin rendered from ``settings`` differ."""
    layout = Layout(frontend_port=8000, stats_socket="/tmp/contract.sock", slots=[Slot("s1", 9000)], time_scale=1.0)
    twin = _haproxy_facts(haproxy_config.render(settings, layout))
    lb = _attributes(_one(template, LB), "LoadBalancerAttributes")
    tg_props = _one(template, TG)
    tg = _attributes(tg_props, "TargetGroupAttributes")
    lb_cookie = (tg["stickiness.enabled"], tg["stickiness.type"]) == ("true", "lb_cookie")
    duration = float(tg["stickiness.lb_cookie.duration_seconds"])
    pairs = {
        "idle_timeout": (float(lb["idle_timeout.timeout_seconds"]), twin["idle_timeout_s"]),
        "http2": (lb["routing.http2.enabled"], "false"),  # the twin's frontend is HTTP/1.1 only
        "cookie_name": ("AWSALB" if lb_cookie else "app cookie", twin["cookie_name"]),
        "cookie_duration": ((duration, duration), (twin["cookie_maxlife_s"], twin["cookie_max_age_s"])),
        "health_check_path": (tg_props["HealthCheckPath"], twin["health_check_path"]),
        "health_check_matcher": (tg_props["Matcher"]["HttpCode"], twin["health_check_matcher"]),
        "health_check_interval": (tg_props["HealthCheckIntervalSeconds"], twin["health_check_interval_s"]),
        "health_check_timeout": (tg_props["HealthCheckTimeoutSeconds"], twin["health_check_timeout_s"]),
        "healthy_threshold": (tg_props["HealthyThresholdCount"], twin["healthy_threshold_count"]),
        "unhealthy_threshold": (tg_props["UnhealthyThresholdCount"], twin["unhealthy_threshold_count"]),
        "deregistration_delay": (float(tg["deregistration_delay.timeout_seconds"]), deregistration_delay_s(settings)),
    }
    return sorted(name for name, (cdk, local) in pairs.items() if cdk != local)


def test_cdk_template_and_haproxy_config_agree(reference_template: dict[str, Any]) -> None:
    """Idle timeout, stickiness cookie and duration, health check and deregistration delay agree on both sides."""
    settings = reference_settings()
    assert contract_mismatches(reference_template, settings) == []
    lb = _attributes(_one(reference_template, LB), "LoadBalancerAttributes")
    assert lb["idle_timeout.timeout_seconds"] == str(settings["idle_timeout_s"])  # both rendered from `settings`


def test_contract_catches_a_twin_rendered_from_other_settings(reference_template: dict[str, Any]) -> None:
    """A twin rendered from different settings fails the contract on exactly the values that differ."""
    other = reference_settings().with_overrides(
        {
            "idle_timeout_s": 121,
            "stickiness_duration_s": 600,
            "health_check_path": "/ready",
            "deregistration_delay_s": 61,
        }
    )
    assert contract_mismatches(reference_template, other) == [
        "cookie_duration",
        "deregistration_delay",
        "health_check_path",
        "idle_timeout",
    ]
