"""Rules run for the parts a deployment has, and for your own server only on the settings it is told."""

from __future__ import annotations

import pytest

from stickyws.settings import (
    RULES,
    Settings,
    Severity,
    read_server_environment,
    server_environment,
    server_labels,
    to_env,
)
from stickyws.settings.scopes import PARTS, Scope

OWN = Settings().with_overrides({"server_mode": "own"})
#: The settings of the example in the issue tracker's words: a drain window the ALB's delay cannot cover.
LONG_DRAIN = {"drain_window_s": 45, "deregistration_delay_s": 30}


def error_rules(settings: Settings, parts: set[Scope] | None = None) -> list[str]:
    return [f.rule for f in settings.validate(parts) if f.severity is Severity.ERROR]


def test_reference_stack_runs_every_rule() -> None:
    """A whole reference stack (every part of an ECS deployment) skips no rule; the Kubernetes rules are left out."""
    plan = Settings().plan()
    assert plan.skipped == ()
    assert [r.id for r in plan.applied] == [r.id for r in RULES.values() if Scope.KUBERNETES not in r.scopes]
    assert [r.id for r in plan.left_out] == [r.id for r in RULES.values() if Scope.KUBERNETES in r.scopes]


def test_every_rule_but_in_range_names_its_scopes() -> None:
    """Each rule says which parts of a deployment it speaks of; only in-range (per setting) speaks of all."""
    assert [r.id for r in RULES.values() if not r.scopes] == ["in-range"]


def test_own_server_skips_a_drain_rule_it_is_not_told() -> None:
    """drain_window_s > deregistration_delay_s stops a reference stack, not your own server that never reads it."""
    assert error_rules(Settings().with_overrides(LONG_DRAIN)) == ["drain-within-deregistration-delay"]
    own = OWN.with_overrides(LONG_DRAIN)
    assert error_rules(own) == []
    assert own.check() != []  # infos only, no raise
    skipped = dict(line.split(": ", 1) for line in own.plan().describe_skipped())
    assert (
        skipped["drain-within-deregistration-delay"] == "your server is not told drain_window_s (add it to server_env)"
    )
    assert skipped["registry-ttl-order"] == "the server is your own (server_mode=own), not the reference server"


def test_own_server_told_the_drain_window_is_judged_on_it() -> None:
    """Once your server is told drain_window_s, the same contradiction is an error again."""
    told = OWN.with_overrides({**LONG_DRAIN, "server_env": "drain_window_s=DRAIN_S"})
    assert error_rules(told) == ["drain-within-deregistration-delay"]


def test_out_of_range_setting_counts_only_when_told() -> None:
    """A reference-server setting out of range is no error for your own server until it is told that setting."""
    broken = OWN.with_overrides({"max_connections": 0})
    assert error_rules(broken) == []
    assert error_rules(broken.with_overrides({"server_env": "max_connections=MAX_CONN"})) == [
        "in-range",
        "scaling-below-limit",
    ]


def test_load_balancer_alone_runs_only_its_rules() -> None:
    """With only a load balancer, server, service and registry rules are skipped and the ALB's still fail."""
    bad = Settings().with_overrides({"http2_enabled": True, "ping_interval_s": 100, "min_count": 5})
    assert error_rules(bad, {Scope.LOAD_BALANCER}) == ["http2-off"]
    assert error_rules(bad) == ["http2-off", "ping-within-idle-timeout", "task-counts"]
    plan = bad.plan({Scope.LOAD_BALANCER})
    assert {s.rule.id: s.reason for s in plan.skipped}["task-counts"] == "the deployment has no ECS service"
    assert {s.rule.id: s.reason for s in plan.skipped}["ping-within-idle-timeout"] == "the deployment has no server"


def test_load_balancer_and_service_are_compared() -> None:
    """An ALB idle timeout of 100 s and a server ping of 60 s contradict once both parts are in front of the rules."""
    both = Settings().with_overrides({"idle_timeout_s": 100, "ping_interval_s": 60})
    assert error_rules(both, {Scope.SERVER, Scope.SERVICE}) == []
    assert error_rules(both, {Scope.LOAD_BALANCER, Scope.SERVER, Scope.SERVICE}) == ["ping-within-idle-timeout"]


def test_unknown_part_is_refused() -> None:
    """Parts are load balancer, service, server and registry; the derived scopes cannot be passed."""
    assert {Scope.REFERENCE_SERVER, Scope.CLIENT}.isdisjoint(PARTS)
    with pytest.raises(ValueError, match="reference_server"):
        Settings().plan({Scope.REFERENCE_SERVER})


def test_own_server_is_told_only_its_settings() -> None:
    """Your own server's environment holds exactly the settings server_env names, under its names."""
    own = OWN.with_overrides({"server_env": "port=PORT,ping_interval_s,drain_window_s=DRAIN_S", "port": 3000})
    assert server_environment(own) == {"PORT": "3000", "STICKYWS_PING_INTERVAL_S": "30", "DRAIN_S": "45"}
    assert server_environment(OWN) == {}
    assert server_environment(Settings()) == to_env(Settings())


def test_labels_and_environment_give_back_what_the_server_is_told() -> None:
    """An auditor reading a container's labels and environment finds exactly the settings the server is told."""
    own = OWN.with_overrides({"server_env": "ping_interval_s=PING", "ping_interval_s": 20})
    env = {**server_environment(own), "STICKYWS_DRAIN_WINDOW_S": "999"}  # a variable the server is not told of
    settings, read = read_server_environment(env, server_labels(own))
    assert read == {"ping_interval_s": "20"}
    assert (settings.own_server, settings["ping_interval_s"], settings["drain_window_s"]) == (True, 20.0, 45.0)
    reference, read = read_server_environment(to_env(Settings().with_overrides({"ping_interval_s": 7})), {})
    assert (reference.own_server, reference["ping_interval_s"], len(read)) == (False, 7.0, len(to_env(Settings())))
    unlabeled, read = read_server_environment({"PORT": "3000"}, {})
    assert (unlabeled.own_server, read) == (True, {})
