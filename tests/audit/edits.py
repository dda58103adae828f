"""Edits of a CloudFormation template dict (the reference stack's or the hand-made one).

Each edit returns a changed deep copy and never touches its input, so session-scoped templates
stay intact. They find resources by type, not by logical id (CDK ids carry hashes).
:data:`MUTATIONS` pairs each broken deployment the issue names with the rules that must fail.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stickyws.settings import from_env

LB_TYPE = "AWS::ElasticLoadBalancingV2::LoadBalancer"
TG_TYPE = "AWS::ElasticLoadBalancingV2::TargetGroup"
RULE_TYPE = "AWS::ElasticLoadBalancingV2::ListenerRule"
TASK_TYPE = "AWS::ECS::TaskDefinition"
REGISTRY_TYPE = "AWS::ElastiCache::ReplicationGroup"


def only(template: dict[str, Any], kind: str) -> dict[str, Any]:
    """The properties of the one resource of type ``kind`` (AssertionError if not exactly one)."""
    found = [r for r in template["Resources"].values() if r.get("Type") == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    props: dict[str, Any] = found[0]["Properties"]
    return props


def _set_attribute(entries: list[dict[str, Any]], key: str, value: str) -> None:
    for entry in entries:
        if entry["Key"] == key:
            entry["Value"] = value
            return
    entries.append({"Key": key, "Value": value})


def set_lb_attribute(template: dict[str, Any], key: str, value: str) -> dict[str, Any]:
    """A copy whose load balancer has attribute ``key`` set to ``value``."""
    result = copy.deepcopy(template)
    _set_attribute(only(result, LB_TYPE).setdefault("LoadBalancerAttributes", []), key, value)
    return result


def set_tg_attribute(template: dict[str, Any], key: str, value: str) -> dict[str, Any]:
    """A copy whose target group has attribute ``key`` set to ``value``."""
    result = copy.deepcopy(template)
    _set_attribute(only(result, TG_TYPE).setdefault("TargetGroupAttributes", []), key, value)
    return result


def remove_lb_attributes(template: dict[str, Any]) -> dict[str, Any]:
    """A copy whose load balancer sets no attribute at all (AWS defaults apply)."""
    result = copy.deepcopy(template)
    only(result, LB_TYPE).pop("LoadBalancerAttributes", None)
    return result


def remove_upgrade_rule(template: dict[str, Any]) -> dict[str, Any]:
    """A copy without the listener rule(s) matching ``Upgrade: websocket`` (and without DependsOn on them)."""
    result = copy.deepcopy(template)
    resources = result["Resources"]
    doomed = {
        logical
        for logical, r in resources.items()
        if r.get("Type") == RULE_TYPE
        and any(
            (c.get("HttpHeaderConfig") or {}).get("HttpHeaderName", "").lower() == "upgrade"
            for c in r["Properties"].get("Conditions", [])
        )
    }
    assert doomed, "template has no Upgrade rule to remove"
    for logical in doomed:
        del resources[logical]
    for r in resources.values():
        depends = r.get("DependsOn")
        if isinstance(depends, list):
            r["DependsOn"] = [d for d in depends if d not in doomed]
        elif depends in doomed:
            del r["DependsOn"]
    return result


def server_container(template: dict[str, Any]) -> dict[str, Any]:
    """The container definition that carries ``STICKYWS_*`` settings in the one task definition."""
    containers = only(template, TASK_TYPE)["ContainerDefinitions"]
    for container in containers:
        if any(e["Name"].startswith("STICKYWS_") for e in container.get("Environment", [])):
            return dict(container)
    raise AssertionError("no container with STICKYWS_* settings")


def container_settings(template: dict[str, Any]) -> Any:
    """The settings rendered into the server container's environment."""
    env = {e["Name"]: e["Value"] for e in server_container(template)["Environment"] if isinstance(e["Value"], str)}
    return from_env(env)


def set_stop_timeout(template: dict[str, Any], seconds: int) -> dict[str, Any]:
    """A copy whose server container has ``StopTimeout`` = ``seconds``."""
    result = copy.deepcopy(template)
    for container in only(result, TASK_TYPE)["ContainerDefinitions"]:
        if any(e["Name"].startswith("STICKYWS_") for e in container.get("Environment", [])):
            container["StopTimeout"] = seconds
    return result


def set_registry(template: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A copy whose registry replication group has ``changes`` applied (a value ``None`` removes the property)."""
    result = copy.deepcopy(template)
    props = only(result, REGISTRY_TYPE)
    for key, value in changes.items():
        if value is None:
            props.pop(key, None)
        else:
            props[key] = value
    return result


def _idle_below_twice_ping(template: dict[str, Any]) -> dict[str, Any]:
    ping = container_settings(template)["ping_interval_s"]
    return set_lb_attribute(template, "idle_timeout.timeout_seconds", str(int(2 * ping) - 1))


@dataclass(frozen=True)
class Mutation:
    """A broken deployment: how to break the template, and exactly which rules must then fail."""

    name: str
    edit: Callable[[dict[str, Any]], dict[str, Any]]
    failing: frozenset[str]


# A mutation of an infrastructure value also makes the infrastructure disagree with the container's
# rendered settings, which `app-settings-match` reports; that is part of the expected outcome.
MUTATIONS: tuple[Mutation, ...] = (
    Mutation(
        "http2-on",
        lambda t: set_lb_attribute(t, "routing.http2.enabled", "true"),
        frozenset({"http2-off", "app-settings-match"}),
    ),
    Mutation(
        "stickiness-off",
        lambda t: set_tg_attribute(t, "stickiness.enabled", "false"),
        frozenset({"stickiness", "app-settings-match"}),
    ),
    Mutation(
        "deregistration-delay-5s",
        lambda t: set_tg_attribute(t, "deregistration_delay.timeout_seconds", "5"),
        frozenset({"drain-within-deregistration-delay", "app-settings-match"}),
    ),
    Mutation(
        "idle-timeout-below-twice-ping",
        _idle_below_twice_ping,
        frozenset({"ping-within-idle-timeout", "app-settings-match"}),
    ),
    Mutation("no-upgrade-rule", remove_upgrade_rule, frozenset({"upgrade-rule"})),
    Mutation(
        "registry-without-tls",
        lambda t: set_registry(t, TransitEncryptionEnabled=False, TransitEncryptionMode=None),
        frozenset({"registry-encryption-and-auth"}),
    ),
    Mutation(
        "registry-tls-preferred",
        lambda t: set_registry(t, TransitEncryptionMode="preferred"),
        frozenset({"registry-encryption-and-auth"}),
    ),
    Mutation(
        "registry-without-auth",
        lambda t: set_registry(t, UserGroupIds=None),
        frozenset({"registry-encryption-and-auth", "app-settings-match"}),
    ),
    Mutation(
        "registry-without-failover",
        lambda t: set_registry(t, NumCacheClusters=1, MultiAZEnabled=False, AutomaticFailoverEnabled=False),
        frozenset({"registry-topology", "registry-encryption-and-auth", "app-settings-match"}),
    ),
    Mutation(
        "stop-timeout-150s",
        lambda t: set_stop_timeout(t, 150),
        frozenset({"in-range", "app-settings-match"}),
    ),
)

#: The mutations that stay visible after a moto deployment: moto's CloudFormation cannot create the registry
#: (tests/moto/moto_compat.py removes ElastiCache resources), so registry mutations are judged on templates only.
DEPLOYABLE_MUTATIONS: tuple[Mutation, ...] = tuple(m for m in MUTATIONS if not m.name.startswith("registry-"))
