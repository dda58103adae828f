"""The Kubernetes rules: each refuses its bad value with the fix and passes on the defaults; they judge a
Kubernetes deployment only, and the ECS rules never judge one."""

from __future__ import annotations

from typing import Any

import pytest

from stickyws.settings import RULES, Settings, Severity
from stickyws.settings.scopes import PARTS, STACK_PARTS, Scope

K8S = {Scope.LOAD_BALANCER, Scope.KUBERNETES, Scope.SERVER}
K8S_RULES = [r.id for r in RULES.values() if Scope.KUBERNETES in r.scopes]


def findings(overrides: dict[str, Any], rule: str, parts: set[Scope] | None = None) -> list[tuple[str, str, str]]:
    settings = Settings().with_overrides(overrides)
    return [
        (f.severity.value, f.message, f.fix)
        for f in settings.validate(K8S if parts is None else parts)
        if f.rule == rule
    ]


def test_defaults_pass_every_kubernetes_rule() -> None:
    """With the defaults a Kubernetes deployment has no finding from any Kubernetes rule."""
    assert K8S_RULES == [
        "k8s-names",
        "k8s-prestop-covers-propagation",
        "k8s-grace-covers-drain",
        "k8s-drain-within-deregistration-delay",
        "k8s-target-type",
        "k8s-readiness-gate",
        "k8s-replica-counts",
        "k8s-pdb-keeps-pods",
        "k8s-rollout",
    ]
    assert [f for f in Settings().validate(K8S) if f.rule in K8S_RULES] == []


#: Each Kubernetes rule with a bad value, the start of its message and of its fix.
BROKEN_K8S: list[tuple[str, dict[str, Any], str, str]] = [
    ("k8s-names", {"k8s_namespace": "Chat_NS"}, "k8s_namespace='Chat_NS' is not a DNS label", "set k8s_namespace"),
    (
        "k8s-prestop-covers-propagation",
        {"pre_stop_delay_s": 5},
        "pre_stop_delay_s=5 < deregistration_propagation_s=10",
        "set pre_stop_delay_s >= 10",
    ),
    (
        "k8s-grace-covers-drain",
        {"termination_grace_period_s": 69},
        "termination_grace_period_s=69 < pre_stop_delay_s + drain_window_s + shutdown_timeout_s = 70",
        "set termination_grace_period_s >= 70 (Kubernetes has no 120 s cap)",
    ),
    (
        "k8s-drain-within-deregistration-delay",
        {"pre_stop_delay_s": 20},
        "pre_stop_delay_s + drain_window_s = 65 > deregistration_delay_s=60",
        "set deregistration_delay_s >= 65",
    ),
    (
        "k8s-target-type",
        {"k8s_target_type": "instance"},
        "k8s_target_type=instance with stickiness: the ALB cookie pins a node",
        "set k8s_target_type=ip",
    ),
    (
        "k8s-readiness-gate",
        {"readiness_gate": False},
        "readiness_gate=false with k8s_target_type=ip",
        "set readiness_gate=true",
    ),
    (
        "k8s-replica-counts",
        {"replicas": 11},
        "min_replicas=2, replicas=11, max_replicas=10 are out of order",
        "keep min_replicas <= replicas <= max_replicas",
    ),
    (
        "k8s-pdb-keeps-pods",
        {"pdb_max_unavailable": 2},
        "pdb_max_unavailable=2 >= 2 (the fewest of replicas and min_replicas)",
        "set pdb_max_unavailable below 2",
    ),
    (
        "k8s-rollout",
        {"max_surge_percent": 0},
        "max_surge_percent=0 and max_unavailable_percent=0",
        "set max_surge_percent above 0",
    ),
]


def test_every_kubernetes_rule_has_a_failing_case() -> None:
    """No Kubernetes rule goes untested: each appears in BROKEN_K8S."""
    assert [rule for rule, _, _, _ in BROKEN_K8S] == K8S_RULES


@pytest.mark.parametrize(("rule", "bad", "message", "fix"), BROKEN_K8S)
def test_each_rule_refuses_its_bad_value(rule: str, bad: dict[str, Any], message: str, fix: str) -> None:
    """The bad value is an error of exactly that rule, whose message names the values and whose fix names the change."""
    (found,) = findings(bad, rule)
    assert found[0] == "error"
    assert found[1].startswith(message), found[1]
    assert found[2].startswith(fix), found[2]
    errors = [f.rule for f in Settings().with_overrides(bad).validate(K8S) if f.severity is Severity.ERROR]
    assert errors == [rule]


@pytest.mark.parametrize(
    ("rule", "soft", "message"),
    [
        ("k8s-pdb-keeps-pods", {"pdb_max_unavailable": 0}, "pdb_max_unavailable=0: node drains"),
        ("k8s-rollout", {"max_unavailable_percent": 25}, "max_unavailable_percent=25: a rollout stops pods"),
    ],
)
def test_soft_problems_are_warnings(rule: str, soft: dict[str, Any], message: str) -> None:
    """A PDB that blocks every drain and a rollout that may remove pods first are warnings, not errors."""
    (found,) = findings(soft, rule)
    assert found[0] == "warning"
    assert found[1].startswith(message)


def test_fewer_min_replicas_bound_the_pdb() -> None:
    """With replicas=4 but min_replicas=2, a budget of 2 still lets a drain stop every pod the autoscaler leaves."""
    (found,) = findings({"replicas": 4, "pdb_max_unavailable": 2}, "k8s-pdb-keeps-pods")
    assert found[0] == "error"


def test_kubernetes_plan_skips_the_ecs_rules() -> None:
    """Load balancer + Kubernetes + server judges the Kubernetes rules and skips every ECS service rule, saying why."""
    plan = Settings().plan(K8S)
    applied = [r.id for r in plan.applied]
    assert set(K8S_RULES) <= set(applied)
    skipped = {s.rule.id: s.reason for s in plan.skipped}
    assert skipped["stop-timeout-covers-shutdown"] == "the deployment has no ECS service"
    assert skipped["task-counts"] == "the deployment has no ECS service"
    assert not any(Scope.SERVICE in r.scopes for r in plan.applied)
    assert plan.left_out == ()
    # The ECS stop-timeout cap: refused on ECS, not judged on Kubernetes.
    long_shutdown = Settings().with_overrides({"shutdown_timeout_s": 60, "termination_grace_period_s": 120})
    assert [f.rule for f in long_shutdown.validate() if f.severity is Severity.ERROR] == [
        "stop-timeout-covers-shutdown"
    ]
    assert [f.rule for f in long_shutdown.validate(K8S) if f.severity is Severity.ERROR] == []


def test_ecs_plans_leave_the_kubernetes_rules_out() -> None:
    """An ECS deployment (the default parts) neither runs nor lists the Kubernetes rules, and ignores their settings."""
    assert Scope.KUBERNETES in PARTS
    assert Scope.KUBERNETES not in STACK_PARTS
    plan = Settings().plan()
    assert [r.id for r in plan.left_out] == K8S_RULES
    assert not {s.rule.id for s in plan.skipped} & set(K8S_RULES)
    bad = Settings().with_overrides({"termination_grace_period_s": 1, "readiness_gate": False, "replicas": 0})
    assert [f for f in bad.validate() if f.severity is Severity.ERROR] == []
    assert {f.rule for f in bad.validate(K8S) if f.severity is Severity.ERROR} == {
        "in-range",
        "k8s-grace-covers-drain",
        "k8s-readiness-gate",
        "k8s-replica-counts",
        "k8s-pdb-keeps-pods",
    }


def test_own_server_not_told_the_drain_skips_the_drain_rules() -> None:
    """For your own server the rules comparing the drain are skipped until it is told drain_window_s."""
    own = Settings().with_overrides({"server_mode": "own", "termination_grace_period_s": 20})
    skipped = {s.rule.id: s.reason for s in own.plan(K8S).skipped}
    assert skipped["k8s-grace-covers-drain"] == (
        "your server is not told drain_window_s, shutdown_timeout_s (add it to server_env)"
    )
    told = own.with_overrides({"server_env": "drain_window_s,shutdown_timeout_s"})
    assert [f.rule for f in told.validate(K8S) if f.severity is Severity.ERROR] == ["k8s-grace-covers-drain"]


def test_a_kubernetes_rule_alone_is_skipped_without_the_workload() -> None:
    """Naming the load balancer and the server but not Kubernetes leaves the Kubernetes rules out."""
    plan = Settings().plan({Scope.LOAD_BALANCER, Scope.SERVER})
    assert {r.id for r in plan.left_out} == set(K8S_RULES)
