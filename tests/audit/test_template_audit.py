"""`stickyws audit --template`: the template path on a hand-written template, through the real CLI."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from stickyws.audit.checks import CHECKS, Status, audit, catalog
from stickyws.audit.from_template import TemplateError, view_from_template
from stickyws.cli import main
from stickyws.settings import RULES, Scope, Settings
from tests.audit.edits import MUTATIONS, only, remove_lb_attributes, set_lb_attribute
from tests.audit.handmade import make_template


def _write(tmp_path: Path, template: dict[str, Any], name: str = "t.template.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(template), encoding="utf-8")
    return str(path)


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["audit", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_rows_are_the_model_rules_then_the_deployment_checks() -> None:
    """The audit has one row per rule of the settings model's registry (but the Kubernetes rules, for a template),
    then one per deployment check."""
    result = audit(view_from_template(make_template()))
    ecs_rules = [rule.id for rule in RULES.values() if Scope.KUBERNETES not in rule.scopes]
    assert [r.rule for r in result.results] == [*ecs_rules, *CHECKS]
    assert [(r.rule, r.kind) for r in result.results] == [(rule_id, kind) for rule_id, kind, _ in catalog()]


def test_handmade_template_passes_every_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A template rendered from the default settings passes every rule and exits 0."""
    code, out, err = _run(["--template", _write(tmp_path, make_template())], capsys)
    assert (code, err) == (0, "")
    assert out.rstrip().endswith(f"{len(catalog())} pass, 0 warn, 0 fail (exit 0)")


@pytest.mark.parametrize("mutation", MUTATIONS, ids=lambda m: m.name)
def test_mutated_template_fails_its_rule(tmp_path: Path, capsys: pytest.CaptureFixture[str], mutation: Any) -> None:
    """Each broken template is reported by exactly its rules, and the CLI exits 1."""
    template = mutation.edit(make_template())
    assert set(audit(view_from_template(template)).failed()) == mutation.failing
    code, out, _ = _run(["--template", _write(tmp_path, template), "--json"], capsys)
    report = json.loads(out)
    assert code == 1
    assert {r["rule"] for r in report["results"] if r["status"] == "fail"} == mutation.failing


def test_settings_other_than_the_defaults_are_read_not_assumed() -> None:
    """A deployment rendered from non-default settings passes, and the audit judged those values."""
    settings = Settings().with_overrides(
        {"idle_timeout_s": 300, "ping_interval_s": 20, "deregistration_delay_s": 120, "drain_window_s": 90}
    )
    result = audit(view_from_template(make_template(settings)))
    assert result.failed() == []
    assert {n: result.settings[n] for n in ("idle_timeout_s", "ping_interval_s", "deregistration_delay_s")} == {
        "idle_timeout_s": 300,
        "ping_interval_s": 20.0,
        "deregistration_delay_s": 120,
    }
    assert result.observed["idle_timeout_s"].where == "load balancer attribute idle_timeout.timeout_seconds"


def test_omitted_attributes_take_the_aws_defaults() -> None:
    """A load balancer without attributes is judged with AWS's defaults: HTTP/2 on, idle timeout 60 s."""
    result = audit(view_from_template(remove_lb_attributes(make_template())))
    assert result.result("http2-off").status is Status.FAIL
    assert result.observed["http2_enabled"].text == "true"
    assert result.observed["http2_enabled"].aws_default is True
    assert result.observed["idle_timeout_s"].text == "60"
    assert result.result("invalid-header-dropping").status is Status.WARN
    assert result.result("access-logs").status is Status.WARN


def test_http_only_template_warns_about_tls(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The HTTP-only demo mode passes with a tls-policy warning; its Upgrade rule is on the HTTP listener."""
    result = audit(view_from_template(make_template(https=False)))
    assert result.result("tls-policy").status is Status.WARN
    assert result.result("tls-policy").found == "no HTTPS listener (HTTP only, demo mode): HTTP:80"
    assert result.result("upgrade-rule").found == "HTTP:80: priority 1"
    code, _, _ = _run(["--template", _write(tmp_path, make_template(https=False))], capsys)
    assert code == 0


def test_parameter_defaults_are_resolved_and_expressions_are_not_guessed() -> None:
    """A Ref to a parameter uses its Default; an Fn::If is left unread and named in the notes."""
    template = make_template()
    template["Parameters"]["IdleTimeout"] = {"Type": "Number", "Default": 50}
    template = set_lb_attribute(template, "idle_timeout.timeout_seconds", {"Ref": "IdleTimeout"})  # type: ignore[arg-type]
    result = audit(view_from_template(template))
    assert result.settings["idle_timeout_s"] == 50
    assert result.result("ping-within-idle-timeout").status is Status.FAIL

    template = set_lb_attribute(make_template(), "routing.http2.enabled", {"Fn::If": ["C", "true", "false"]})  # type: ignore[arg-type]
    view = view_from_template(template)
    assert "routing.http2.enabled" not in view.load_balancer.attributes  # type: ignore[union-attr]
    assert any("load balancer attribute routing.http2.enabled is not statically resolvable" in n for n in view.notes)


def test_unparsable_value_is_reported_not_raised() -> None:
    """An attribute that is not a number is reported by readable-values and the rules see the default."""
    result = audit(view_from_template(set_lb_attribute(make_template(), "idle_timeout.timeout_seconds", "soon")))
    row = result.result("readable-values")
    assert row.status is Status.FAIL
    assert "idle_timeout_s='soon'" in row.found
    assert "assumed, not observed: idle_timeout_s=120" in result.result("ping-within-idle-timeout").found


def test_template_without_service_skips_the_service_and_server_checks() -> None:
    """A template with an ALB but no ECS service passes its ALB checks and skips those of the service and server."""
    template = make_template()
    del template["Resources"]["Service"]
    result = audit(view_from_template(template))
    no_service = "the deployment has no ECS service (none registered with the target group was read)"
    assert result.result("deployment-circuit-breaker").found == no_service
    assert result.result("task-ingress-from-alb-only").found == no_service
    assert (
        result.result("app-settings-match").found == "the deployment has no server container (no task definition read)"
    )
    assert result.result("ping-within-idle-timeout").found == "the deployment has no server"
    assert {r.rule for r in result.results if r.status is Status.SKIP} >= {
        "deployment-circuit-breaker",
        "task-ingress-from-alb-only",
        "app-settings-match",
        "ping-within-idle-timeout",
        "fargate-task-size",
    }
    assert result.result("http2-off").status is Status.PASS
    assert result.failed() == []


def test_template_without_load_balancer_cannot_be_audited() -> None:
    """A template with no Application Load Balancer raises TemplateError, which the CLI maps to exit 2."""
    template = copy.deepcopy(make_template())
    template["Resources"] = {k: v for k, v in template["Resources"].items() if "ElasticLoadBalancing" not in v["Type"]}
    with pytest.raises(TemplateError, match="no Application Load Balancer"):
        view_from_template(template)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "cannot read template"),
        ("{not json", "is not JSON"),
        ('{"Resources": {}}', "no Application Load Balancer"),
        ("[1, 2]", "has no Resources section"),
    ],
    ids=["missing", "not-json", "no-alb", "no-resources"],
)
def test_unreadable_template_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, reason: str
) -> None:
    """A template that cannot be read exits 2 with a one-line reason on stderr and no traceback."""
    path = tmp_path / "t.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    code, out, err = _run(["--template", str(path)], capsys)
    assert (code, out) == (2, "")
    assert err.startswith("stickyws: ")
    assert reason in err
    assert err.count("\n") == 1
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--template", "a.json", "--stack-name", "S"],
        ["--template", "a.json", "--region", "eu-west-1"],
        ["--template", "a.json", "--assume", "ping_interval_s"],
        ["--template", "a.json", "--assume", "no_such_setting=1"],
    ],
    ids=["no-source", "two-sources", "region-with-template", "assume-without-value", "assume-unknown"],
)
def test_bad_arguments_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Invalid argument combinations exit 2 with a message that says what to pass."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.json").write_text(json.dumps(make_template()), encoding="utf-8")
    code, out, err = _run(args, capsys)
    assert (code, out) == (2, "")
    assert err.startswith("stickyws: ")
    assert err.count("\n") == 1
    assert "Traceback" not in err


def test_json_report_shape(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--json prints the results, the settings judged and where each observed one came from."""
    code, out, _ = _run(["--template", _write(tmp_path, make_template()), "--json"], capsys)
    report = json.loads(out)
    assert code == 0
    assert report["exit_code"] == 0
    assert report["summary"] == {"pass": len(catalog()), "warn": 0, "fail": 0, "skip": 0}
    assert set(report["results"][0]) == {"rule", "kind", "status", "scopes", "found", "expected", "fix"}
    assert report["parts"] == ["load_balancer", "registry", "server", "service"]
    assert report["server"]["mode"] == "reference"
    assert report["overrides"] == []
    assert report["settings"]["idle_timeout_s"] == "120"
    assert report["observed"]["stop_timeout_s"] == {
        "value": "30",
        "where": "container server stopTimeout",
        "aws_default": False,
    }
    assert only(make_template(), "AWS::ECS::TaskDefinition")["ContainerDefinitions"][0]["StopTimeout"] == 30


def test_cloud_assembly_directory_with_one_template(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--template accepts a cdk.out directory holding one template, and refuses one holding two."""
    _write(tmp_path, make_template(), "StickyWebSocketStack.template.json")
    code, out, _ = _run(["--template", str(tmp_path)], capsys)
    assert code == 0
    assert out.startswith(f"stickyws audit of template {tmp_path}\n")
    _write(tmp_path, make_template(), "Other.template.json")
    code, _, err = _run(["--template", str(tmp_path)], capsys)
    assert code == 2
    assert err == (
        f"stickyws: {tmp_path} holds 2 *.template.json files "
        "(Other.template.json, StickyWebSocketStack.template.json); pass one of them\n"
    )


@pytest.mark.parametrize(
    ("overrides", "found"),
    [
        ({}, "single Registry (1 replicas): TLS required, encrypted at rest, auth iam (user group reg-users)"),
        (
            {"registry_mode": "cluster", "registry_shards": 3, "registry_replicas_per_shard": 2},
            "cluster Registry (3 shards x 2 replicas): TLS required, encrypted at rest, auth iam "
            "(user group reg-users)",
        ),
        (
            {"registry_mode": "serverless", "registry_auth": "token"},
            "serverless Registry: TLS required, encrypted at rest, auth token (user group reg-users)",
        ),
    ],
    ids=["single", "cluster", "serverless"],
)
def test_registry_mode_tls_and_auth_are_reported(overrides: dict[str, Any], found: str) -> None:
    """Each registry mode is read from the template with its TLS and auth, matches the container, and passes."""
    settings = Settings().with_overrides(overrides)
    result = audit(view_from_template(make_template(settings)))
    assert result.failed() == []
    assert result.result("registry-encryption-and-auth").found == found
    for name, value in overrides.items():
        assert result.observed[name].text == str(value)


def test_reference_template_registry(reference_template_json: dict[str, Any]) -> None:
    """The reference stack's registry reads as a single primary with TLS required and IAM-authenticated RBAC."""
    check = audit(view_from_template(reference_template_json)).result("registry-encryption-and-auth")
    assert check.status.value == "pass"
    assert check.found.startswith("single RegistryReplicationGroup")
    group = only(reference_template_json, "AWS::ElastiCache::UserGroup")["UserGroupId"]
    assert check.found.endswith(f"(1 replicas): TLS required, encrypted at rest, auth iam (user group {group})")
