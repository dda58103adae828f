"""Fixes name what applies: StickyWebSocketLoadBalancer's parameter for a load balancer it creates, the load
balancer itself when the construct was given it (``load_balancer=``/``listener=``)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from stickyws.audit.checks import Status, audit
from stickyws.audit.from_template import view_from_template
from stickyws.audit.view import ORIGIN_CREATED, ORIGIN_SUPPLIED, load_balancer_origin
from tests.audit.edits import set_lb_attribute
from tests.audit.handmade import make_template

STACK = "StickyWebSocketStack"


def _with_paths(template: dict[str, Any], load_balancer: str, rule: str) -> dict[str, Any]:
    """The template with CDK construct paths (``aws:cdk:path`` metadata) on its load balancer and Upgrade rule."""
    resources = template["Resources"]
    resources["LoadBalancer"]["Metadata"] = {"aws:cdk:path": f"{STACK}/{load_balancer}"}
    resources["UpgradeRule"]["Metadata"] = {"aws:cdk:path": f"{STACK}/{rule}"}
    return template


def _renamed(template: dict[str, Any], **names: str) -> dict[str, Any]:
    """The template with resources renamed (every Ref and GetAtt follows), as CDK names them: path plus hash."""
    text = json.dumps(template)
    for old, new in names.items():
        text = text.replace(json.dumps(old), json.dumps(new))
    result: dict[str, Any] = json.loads(text)
    return result


def _no_logs(template: dict[str, Any]) -> dict[str, Any]:
    return set_lb_attribute(template, "access_logs.s3.enabled", "false")


CREATED_BY_PATH = _with_paths(make_template(), "Sticky/LoadBalancer/Resource", "Sticky/WebSocketUpgradeRule/Resource")
SUPPLIED_BY_PATH = _with_paths(make_template(), "SharedAlb/Resource", "Sticky/WebSocketUpgradeRule/Resource")
CREATED_BY_ID = _renamed(
    make_template(), LoadBalancer="StickyLoadBalancer1A2B3C4D", UpgradeRule="StickyWebSocketUpgradeRule5E6F7A8B"
)
SUPPLIED_BY_ID = _renamed(
    make_template(), LoadBalancer="SharedAlb0F1E2D3C", UpgradeRule="StickyWebSocketUpgradeRule5E6F7A8B"
)


@pytest.mark.parametrize(
    ("template", "origin"),
    [
        (CREATED_BY_PATH, ORIGIN_CREATED),
        (SUPPLIED_BY_PATH, ORIGIN_SUPPLIED),
        (CREATED_BY_ID, ORIGIN_CREATED),
        (SUPPLIED_BY_ID, ORIGIN_SUPPLIED),
        (make_template(), None),
    ],
    ids=["created-path", "supplied-path", "created-logical-id", "supplied-logical-id", "no-construct"],
)
def test_who_made_the_load_balancer_is_read_from_paths_or_logical_ids(template: dict[str, Any], origin: str) -> None:
    """The construct's Upgrade rule next to a LoadBalancer child means created; next to another one, supplied."""
    view = view_from_template(template)
    assert view.load_balancer is not None
    assert view.load_balancer.origin == origin


def test_access_log_fix_for_a_load_balancer_the_construct_creates_names_its_parameter() -> None:
    """Access logs off on a load balancer StickyWebSocketLoadBalancer created: the fix names log_bucket=."""
    row = audit(view_from_template(_no_logs(CREATED_BY_PATH))).result("access-logs")
    assert (row.status, row.fix) == (
        Status.WARN,
        "StickyWebSocketLoadBalancer turns them on for a load balancer it creates (log_bucket= picks the bucket)",
    )


@pytest.mark.parametrize("template", [SUPPLIED_BY_PATH, SUPPLIED_BY_ID], ids=["path", "logical-id"])
def test_access_log_fix_for_a_supplied_load_balancer_names_that_load_balancer(template: dict[str, Any]) -> None:
    """Access logs off on a load balancer the construct was given: the fix says what to set on that load balancer,
    not a construct parameter that would not touch it."""
    row = audit(view_from_template(_no_logs(template))).result("access-logs")
    name = f"{STACK}/SharedAlb" if template is SUPPLIED_BY_PATH else "SharedAlb0F1E2D3C"
    assert row.fix == (
        f"on your load balancer {name}, which StickyWebSocketLoadBalancer was given and leaves to you: set "
        "access_logs.s3.enabled=true and access_logs.s3.bucket=BUCKET (in CDK: its log_access_logs(bucket))"
    )
    assert "log_bucket=" not in row.fix


def _broken_everywhere(template: dict[str, Any]) -> dict[str, Any]:
    """No access logs, no invalid-header dropping, a TLS 1.2 policy, and no Upgrade rule on the HTTP listener."""
    template = set_lb_attribute(_no_logs(template), "routing.http.drop_invalid_header_fields.enabled", "false")
    resources = template["Resources"]
    resources["HttpsListener"]["Properties"]["SslPolicy"] = "ELBSecurityPolicy-2016-08"
    resources["HttpListener"]["Properties"]["DefaultActions"] = resources["HttpsListener"]["Properties"][
        "DefaultActions"
    ]
    return template


def test_every_load_balancer_fix_follows_who_owns_it() -> None:
    """Each check of the load balancer itself gives the construct's way for a created one and the load balancer's
    own setting for a supplied one."""
    rules = ("upgrade-rule", "tls-policy", "invalid-header-dropping", "access-logs")
    created = audit(view_from_template(_broken_everywhere(CREATED_BY_PATH)))
    supplied = audit(view_from_template(_broken_everywhere(SUPPLIED_BY_PATH)))
    assert [created.result(r).status is Status.PASS for r in rules] == [False] * len(rules)
    assert {r: created.result(r).fix for r in rules} == {
        "upgrade-rule": "StickyWebSocketLoadBalancer adds it to the listeners it creates (upgrade_rule_priority sets "
        "its priority)",
        "tls-policy": "StickyWebSocketLoadBalancer sets ELBSecurityPolicy-TLS13-1-2-2021-06 on the HTTPS listener it "
        "creates: remove what overrides SslPolicy on HTTPS:443",
        "invalid-header-dropping": "StickyWebSocketLoadBalancer sets it from the setting "
        "drop_invalid_header_fields=true",
        "access-logs": "StickyWebSocketLoadBalancer turns them on for a load balancer it creates (log_bucket= picks "
        "the bucket)",
    }
    owner = f"on your load balancer {STACK}/SharedAlb, which StickyWebSocketLoadBalancer was given and leaves to you: "
    assert {r: supplied.result(r).fix for r in rules} == {
        "upgrade-rule": owner + "add a rule on HTTP:80 matching http-header Upgrade=websocket that forwards to the "
        "target group, or pass that listener as listener= to StickyWebSocketLoadBalancer, which adds it",
        "tls-policy": owner + "set SslPolicy ELBSecurityPolicy-TLS13-1-2-2021-06 on HTTPS:443",
        "invalid-header-dropping": owner + "set the attribute routing.http.drop_invalid_header_fields.enabled=true",
        "access-logs": owner + "set access_logs.s3.enabled=true and access_logs.s3.bucket=BUCKET (in CDK: its "
        "log_access_logs(bucket))",
    }


def test_origin_without_the_construct_rule_is_unknown() -> None:
    """Logical ids or paths that do not show the construct's Upgrade rule say nothing about who made the load
    balancer."""
    assert load_balancer_origin(("Alb", None), [("UpgradeRule", None)]) is None
    assert load_balancer_origin(("Alb", "S/Alb/Resource"), [("Rule", "S/Other/Rule/Resource")]) is None
    assert load_balancer_origin(("WsLoadBalancer0A1B2C3D", None), [("WsWebSocketUpgradeRule9F8E7D6C", None)]) == (
        ORIGIN_CREATED
    )
    assert load_balancer_origin(("OtherLoadBalancer0A1B2C3D", None), [("WsWebSocketUpgradeRule9F8E7D6C", None)]) == (
        ORIGIN_SUPPLIED
    )


def test_origin_follows_cdk_leaving_out_a_repeated_path_component() -> None:
    """A construct with the id LoadBalancer names its load balancer LoadBalancer<hash> (the reference stack's
    LoadBalancer8E47CE52 next to LoadBalancerWebSocketUpgradeRuleBFBEECA4): created, not supplied."""
    rule = [("LoadBalancerWebSocketUpgradeRuleBFBEECA4", None)]
    assert load_balancer_origin(("LoadBalancer8E47CE52", None), rule) == ORIGIN_CREATED
    assert load_balancer_origin(("LoadBalancerLoadBalancer8E47CE52", None), rule) == ORIGIN_CREATED
    assert load_balancer_origin(("SharedAlb8E47CE52", None), rule) == ORIGIN_SUPPLIED
