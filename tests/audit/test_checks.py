"""The judging core: the model's own rules on rebuilt settings, and each deployment check on a view."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from stickyws.audit import checks
from stickyws.audit.checks import Status, audit, catalog
from stickyws.audit.from_template import view_from_template
from stickyws.audit.view import DeploymentView
from stickyws.settings import LABEL_SERVER_MODE, Settings, Severity, rules
from stickyws.settings.rules import settings_read_by
from tests.audit.edits import only, set_lb_attribute, set_tg_attribute
from tests.audit.handmade import make_template


def _view(template: dict[str, Any]) -> DeploymentView:
    return view_from_template(template)


def _without_container_settings(template: dict[str, Any], *, keep_label: bool = False) -> dict[str, Any]:
    """The template whose server container carries no STICKYWS_* variable (``keep_label``: but says it runs the
    reference server, in its Docker label)."""
    for container in only(template, "AWS::ECS::TaskDefinition")["ContainerDefinitions"]:
        container["Environment"] = [e for e in container["Environment"] if not e["Name"].startswith("STICKYWS_")]
        if keep_label:
            container["DockerLabels"] = {LABEL_SERVER_MODE: "reference"}
    return template


def test_the_auditor_has_no_copy_of_the_rule_recorder() -> None:
    """The settings a rule reads are found by the settings package's recorder; the auditor keeps no copy of it."""
    assert getattr(checks, "settings_read_by", rules.settings_read_by) is rules.settings_read_by
    assert not [name for name in vars(checks) if "Recorder" in name]


def test_failing_setting_rows_are_exactly_the_models_errors() -> None:
    """The rules that fail are exactly those whose Settings.validate() findings are errors: no second copy."""
    template = set_tg_attribute(make_template(), "deregistration_delay.timeout_seconds", "5")
    template = set_lb_attribute(template, "routing.http2.enabled", "true")
    result = audit(_view(template))
    errors = {f.rule for f in result.settings.validate() if f.severity is Severity.ERROR}
    failing = {r.rule for r in result.results if r.kind == "setting" and r.status is Status.FAIL}
    assert failing == errors == {"http2-off", "drain-within-deregistration-delay"}
    rows = [rule_id for rule_id, kind, _ in catalog() if kind == "setting"]
    assert [r.rule for r in result.results if r.kind == "setting"] == rows


def test_passing_row_shows_the_values_its_rule_read() -> None:
    """A passing rule's row shows the settings the rule itself read, found by running it on a recorder."""
    settings = Settings()
    assert settings_read_by("http2-off", settings) == ("http2_enabled",)
    assert settings_read_by("ping-within-idle-timeout", settings) == ("ping_interval_s", "idle_timeout_s")
    result = audit(_view(make_template()))
    assert result.result("http2-off").found == "http2_enabled=false"
    assert result.result("ping-within-idle-timeout").found == "ping_interval_s=30, idle_timeout_s=120"


def test_failure_resting_on_an_unobserved_setting_is_a_warning() -> None:
    """A reference server whose container shows no settings: an idle timeout of 50 s warns (ping assumed 30 s)."""
    template = _without_container_settings(make_template(), keep_label=True)
    result = audit(_view(set_lb_attribute(template, "idle_timeout.timeout_seconds", "50")))
    row = result.result("ping-within-idle-timeout")
    assert row.status is Status.WARN
    assert "assumed, not observed: ping_interval_s=30" in row.found
    assert result.result("app-settings-match").status is Status.WARN
    assert result.exit_code == 0


def test_a_container_with_no_settings_and_no_labels_is_a_server_told_nothing() -> None:
    """Without labels and STICKYWS_* variables the server is taken for your own, told nothing: rules that need
    its ping interval are skipped with the plan's reason, not judged on a default it never reads."""
    template = set_lb_attribute(_without_container_settings(make_template()), "idle_timeout.timeout_seconds", "50")
    result = audit(_view(template))
    row = result.result("ping-within-idle-timeout")
    assert (row.status, row.found) == (Status.SKIP, "your server is not told ping_interval_s (add it to server_env)")
    assert result.result("app-settings-match").found == (
        "your own server (server_mode=own) is told nothing; 0 of them also set on the infrastructure, all equal"
    )
    assert result.exit_code == 0


def test_assumed_settings_replace_the_defaults() -> None:
    """--assume supplies settings the container does not show (your server then counts as told them), and the
    rules judge them."""
    template = set_lb_attribute(_without_container_settings(make_template()), "idle_timeout.timeout_seconds", "50")
    assert audit(_view(template), {"ping_interval_s": "20"}).result("ping-within-idle-timeout").status is Status.PASS
    assert audit(_view(template), {"ping_interval_s": "40"}).result("ping-within-idle-timeout").status is Status.FAIL


def test_infrastructure_wins_over_the_container_and_the_drift_is_reported() -> None:
    """When the ALB and the container disagree, rules judge the ALB's value and app-settings-match names both."""
    result = audit(_view(set_lb_attribute(make_template(), "idle_timeout.timeout_seconds", "300")))
    assert result.settings["idle_timeout_s"] == 300
    row = result.result("app-settings-match")
    assert row.status is Status.FAIL
    assert row.found == (
        "idle_timeout_s: deployment 300 (load balancer attribute idle_timeout.timeout_seconds), "
        "container STICKYWS_IDLE_TIMEOUT_S=120"
    )


def test_task_ingress_open_to_the_internet_fails() -> None:
    """A task security group that admits 0.0.0.0/0 fails task-ingress-from-alb-only."""
    template = make_template()
    template["Resources"]["ServiceSecurityGroup"]["Properties"]["SecurityGroupIngress"] = [
        {"IpProtocol": "tcp", "FromPort": 8080, "ToPort": 8080, "CidrIp": "0.0.0.0/0"}
    ]
    row = audit(_view(template)).result("task-ingress-from-alb-only")
    assert (row.status, row.found) == (Status.FAIL, "ServiceSecurityGroup admits cidr:0.0.0.0/0")


def test_task_ingress_only_from_the_alb_passes() -> None:
    """The template's one ingress rule, from the ALB's security group to the container port, passes."""
    row = audit(_view(make_template())).result("task-ingress-from-alb-only")
    assert (row.status, row.found) == (
        Status.PASS,
        "ServiceSecurityGroup: tcp 8080 from sg:LoadBalancerSecurityGroup",
    )


@pytest.mark.parametrize(
    ("breaker", "status", "found"),
    [
        ({"Enable": True, "Rollback": True}, Status.PASS, "enabled, rollback on"),
        ({"Enable": True, "Rollback": False}, Status.WARN, "enabled, rollback off"),
        ({"Enable": False, "Rollback": False}, Status.FAIL, "not enabled"),
        (None, Status.FAIL, "not set"),
    ],
)
def test_circuit_breaker(breaker: dict[str, bool] | None, status: Status, found: str) -> None:
    """The deployment circuit breaker passes with rollback, warns without it and fails when off or unset."""
    template = make_template()
    config = only(template, "AWS::ECS::Service")["DeploymentConfiguration"]
    if breaker is None:
        del config["DeploymentCircuitBreaker"]
    else:
        config["DeploymentCircuitBreaker"] = breaker
    row = audit(_view(template)).result("deployment-circuit-breaker")
    assert (row.status, row.found) == (status, found)


def test_old_tls_policy_fails_and_names_the_tls13_policy() -> None:
    """An HTTPS listener on a TLS 1.2-only policy fails tls-policy; the fix names the TLS 1.3 policy."""
    template = make_template()
    template["Resources"]["HttpsListener"]["Properties"]["SslPolicy"] = "ELBSecurityPolicy-2016-08"
    row = audit(_view(template)).result("tls-policy")
    assert row.status is Status.FAIL
    assert row.found == "HTTPS:443 ELBSecurityPolicy-2016-08"
    assert "ELBSecurityPolicy-TLS13-1-2-2021-06" in row.fix


def test_plain_http_forwarding_next_to_https_warns() -> None:
    """An HTTP listener that forwards instead of redirecting warns, and needs its own Upgrade rule."""
    template = make_template()
    template["Resources"]["HttpListener"]["Properties"]["DefaultActions"] = [
        {"Type": "forward", "TargetGroupArn": {"Ref": "TargetGroup"}}
    ]
    result = audit(_view(template))
    assert result.result("tls-policy").status is Status.WARN
    assert result.result("upgrade-rule").status is Status.FAIL
    assert result.result("upgrade-rule").found == "HTTPS:443: priority 1; HTTP:80: none"


def test_upgrade_rule_must_forward_to_the_websocket_target_group() -> None:
    """An Upgrade rule that forwards to another target group does not count."""
    template = make_template()
    other = dict(
        template["Resources"]["TargetGroup"], Properties=dict(template["Resources"]["TargetGroup"]["Properties"])
    )
    template["Resources"]["OtherTargetGroup"] = other
    template["Resources"]["UpgradeRule"]["Properties"]["Actions"] = [
        {"Type": "forward", "TargetGroupArn": {"Ref": "OtherTargetGroup"}}
    ]
    view = _view(template)
    view = dataclasses.replace(view, target_group=dataclasses.replace(view.target_group, id="TargetGroup"))  # type: ignore[arg-type]
    assert audit(view).result("upgrade-rule").status is Status.FAIL


def test_min_healthy_below_100_is_the_models_warning() -> None:
    """Minimum healthy 50 % is reported by the model's deployment-keeps-capacity rule as a warning."""
    template = make_template()
    only(template, "AWS::ECS::Service")["DeploymentConfiguration"]["MinimumHealthyPercent"] = 50
    result = audit(_view(template))
    assert result.result("deployment-keeps-capacity").status is Status.WARN
    assert result.result("deployment-keeps-capacity").found.startswith("min_healthy_percent=50")


def test_app_cookie_with_reserved_name_fails_stickiness() -> None:
    """stickiness.type=app_cookie with a cookie named AWSALB... fails the model's stickiness rule."""
    template = set_tg_attribute(make_template(), "stickiness.type", "app_cookie")
    template = set_tg_attribute(template, "stickiness.app_cookie.cookie_name", "AWSALBSESSION")
    result = audit(_view(template))
    assert result.settings["app_cookie_name"] == "AWSALBSESSION"
    assert "app_cookie_name='AWSALBSESSION' uses a prefix the ALB reserves" in result.result("stickiness").found


def test_service_registered_with_another_target_group_fails() -> None:
    """A service whose load balancer mapping names another target group fails service-behind-target-group."""
    view = _view(make_template())
    assert view.service is not None
    assert audit(view).result("service-behind-target-group").found == "Service -> TargetGroup"
    elsewhere = dataclasses.replace(view, service=dataclasses.replace(view.service, target_groups=("OtherGroup",)))
    row = audit(elsewhere).result("service-behind-target-group")
    assert (row.status, row.found) == (Status.FAIL, "Service is registered with OtherGroup")


def test_listener_that_never_forwards_needs_no_upgrade_rule() -> None:
    """An HTTP listener that only answers with a fixed response needs no Upgrade rule and is not clear-text traffic."""
    template = make_template()
    template["Resources"]["HttpListener"]["Properties"]["DefaultActions"] = [
        {"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "404"}}
    ]
    result = audit(_view(template))
    assert (result.result("upgrade-rule").status, result.result("upgrade-rule").found) == (
        Status.PASS,
        "HTTPS:443: priority 1",
    )
    assert result.result("tls-policy").status is Status.PASS
