"""A deployment of your own server image (a Node image with own-server labels), as `stickyws audit` judges it.

The template is tests/audit/handmade.py's, with a Node container that carries `stickyws.server-mode=own`,
`stickyws.server-env` and only the variables it is told, plus `STICKYWS_*` leftovers the Node server never reads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from stickyws.audit.checks import CHECKS, Status, audit, catalog
from stickyws.audit.from_template import view_from_template
from stickyws.cli import main
from stickyws.settings import RULES, Scope, Settings
from tests.audit.edits import set_lb_attribute
from tests.audit.handmade import make_own_server_template, make_template

NODE = Settings().with_overrides(
    {"server_mode": "own", "server_env": "port=PORT,ping_interval_s=WS_PING_S", "port": 3000}
)
#: Leftovers in the Node container that would fail drain-within-deregistration-delay and ping-within-idle-timeout
#: if the auditor believed them: the Node server never reads them.
STRAY = {"STICKYWS_DRAIN_WINDOW_S": "500", "STICKYWS_PING_INTERVAL_S": "100"}
NODE_SKIPPED = {
    "drain-within-deregistration-delay": "your server is not told drain_window_s (add it to server_env)",
    "drain-pace-within-deregistration-delay": "your server is not told drain_pace_per_s, max_connections (add it to "
    "server_env)",
    "stop-timeout-covers-shutdown": "your server is not told shutdown_timeout_s (add it to server_env)",
    "registry-ttl-order": "the server is your own (server_mode=own), not the reference server",
    "scaling-below-limit": "your server is not told max_connections (add it to server_env)",
    "scale-in-protection-renewal": "the server is your own (server_mode=own), not the reference server",
    "topic-retention-covers-reconnect": "the server is your own (server_mode=own), not the reference server",
    "output-bound-fits-messages": "the server is your own (server_mode=own), not the reference server",
    "publish-port-apart": "the server is your own (server_mode=own), not the reference server",
    "registry-topology": "the deployment has no registry it creates",
    "registry-engine": "the deployment has no registry it creates",
    "registry-auth": "the deployment has no registry it creates",
    "registry-pubsub-backlog": "the deployment has no registry it creates; the server is your own "
    "(server_mode=own), not the reference server",
    "registry-serverless-clients": "the deployment has no registry it creates",
    "registry-encryption-and-auth": "the deployment has no registry (no ElastiCache cache in the stack or named "
    "with --registry-id, no REDIS_URL in the container)",
}


def _node_template() -> dict[str, Any]:
    return make_own_server_template(NODE, stray=STRAY)


def _write(tmp_path: Path, template: dict[str, Any]) -> str:
    path = tmp_path / "node.template.json"
    path.write_text(json.dumps(template), encoding="utf-8")
    return str(path)


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["audit", *args])
    captured = capsys.readouterr()
    assert captured.err == ""
    return code, captured.out


def test_own_server_is_judged_on_what_it_is_told_only() -> None:
    """The Node server's settings are read from the variables its labels name; the STICKYWS_* leftovers are
    ignored, and no rule about the reference server or a registry passes: each is skipped with its reason."""
    result = audit(view_from_template(_node_template()))
    assert result.server_read == {"port": "3000", "ping_interval_s": "30"}
    assert result.server_told == {"port": "PORT", "ping_interval_s": "WS_PING_S"}
    assert (result.settings["drain_window_s"], result.settings["ping_interval_s"]) == (45.0, 30.0)
    assert result.parts == {Scope.LOAD_BALANCER, Scope.SERVICE, Scope.SERVER}
    assert {r.rule: r.found for r in result.results if r.status is Status.SKIP} == NODE_SKIPPED
    reference_rows = [r for r in result.results if r.scopes & {Scope.REFERENCE_SERVER, Scope.CLIENT, Scope.REGISTRY}]
    assert reference_rows
    assert [r.rule for r in reference_rows if r.status is not Status.SKIP] == []
    assert [r.rule for r in result.results if r.status is not Status.PASS and r.status is not Status.SKIP] == []
    assert result.result("app-settings-match").found == (
        "your own server (server_mode=own) is told port as PORT, ping_interval_s as WS_PING_S; 0 of them also "
        "set on the infrastructure, all equal"
    )


def test_default_report_is_short(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The default report shows the failures and warnings with their fixes and counts the passes and the skipped
    rows in one line each: 19 lines for 41 rows, where --verbose takes over 80."""
    template = set_lb_attribute(_node_template(), "access_logs.s3.enabled", "false")
    path = _write(tmp_path, template)
    code, out = _run(["--template", path, "--assume", "ping_interval_s=120"], capsys)
    assert code == 1
    assert out.splitlines() == [
        f"stickyws audit of template {path}",
        "server: your own (server_mode=own), told port as PORT, ping_interval_s as WS_PING_S",
        "parts: load balancer, ECS service, server",
        "",
        "fail  ping-within-idle-timeout: The server pings at most every half idle timeout.",
        "      found: ping_interval_s=120 > idle_timeout_s/2=60: one missed ping costs the connection",
        "      fix: set ping_interval_s <= 60 or idle_timeout_s >= 240",
        "warn  access-logs: Load balancer access logs go to S3.",
        "      found: access logs off; connection logs off",
        "      fix: on load balancer LoadBalancer: set access_logs.s3.enabled=true and "
        "access_logs.s3.bucket=BUCKET (in",
        "        CDK: its log_access_logs(bucket)). StickyWebSocketLoadBalancer turns them on for a load balancer it",
        "        creates (log_bucket= picks the bucket)",
        "",
        "--assume ping_interval_s=120 overrides 30 from container variable WS_PING_S",
        "note: no ElastiCache replication group or Serverless cache in the template (registry not read)",
        "",
        "24 passed (--verbose lists them)",
        "15 skipped: parts this deployment does not have, or settings its server is not told (--verbose lists why)",
        "24 pass, 1 warn, 1 fail (exit 1)",
    ]
    assert max(len(line) for line in out.splitlines()[1:]) <= 110  # the first names the (temporary) path
    shown = (Path(__file__).parents[2] / "docs" / "audit.md").read_text(encoding="utf-8")
    assert "\n".join(out.splitlines()[1:]) in shown  # docs/audit.md shows this very report
    _, verbose = _run(["--template", path, "--assume", "ping_interval_s=120", "--verbose"], capsys)
    assert len(verbose.splitlines()) > 80


def test_verbose_lists_every_row_with_the_reasons_for_skipping(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--verbose shows a block for every row: passes with what they read, skipped rows with the plan's reason."""
    code, out = _run(["--template", _write(tmp_path, _node_template()), "--verbose"], capsys)
    assert code == 0
    lines = out.splitlines()
    heads = [line.split(":")[0].split() for line in lines if line[:4] in ("pass", "skip", "warn", "fail")]
    result = audit(view_from_template(_node_template()))
    assert sorted(rule for _, rule in heads) == sorted(r.rule for r in result.results)
    assert [rule for status, rule in heads if status == "skip"] == list(NODE_SKIPPED)
    text = " ".join(" ".join(line.split()) for line in lines)
    for rule, reason in NODE_SKIPPED.items():
        summary = RULES[rule].summary if rule in RULES else CHECKS[rule].summary
        assert f"skip {rule}: {summary} skipped: {reason}" in text
    assert "found: ServiceSecurityGroup: tcp 3000 from sg:LoadBalancerSecurityGroup" in text
    assert lines[-3:] == [
        "26 passed",
        "15 skipped: parts this deployment does not have, or settings its server is not told",
        "26 pass, 0 warn, 0 fail (exit 0)",
    ]


def test_json_holds_every_row_the_parts_and_the_server(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--json keeps every row (skipped ones with their reason and scopes), the parts and what the server is told."""
    code, out = _run(["--template", _write(tmp_path, _node_template()), "--json"], capsys)
    report = json.loads(out)
    assert code == 0
    assert report["summary"] == {"pass": 26, "warn": 0, "fail": 0, "skip": 15}
    assert len(report["results"]) == len(catalog())  # every rule and check the audit runs has its row
    assert {r["rule"]: r["found"] for r in report["results"] if r["status"] == "skip"} == NODE_SKIPPED
    topic = next(r for r in report["results"] if r["rule"] == "topic-retention-covers-reconnect")
    assert topic["scopes"] == ["client", "reference_server"]
    assert report["parts"] == ["load_balancer", "server", "service"]
    assert report["server"] == {
        "mode": "own",
        "told": {"port": "PORT", "ping_interval_s": "WS_PING_S"},
        "read": {"port": "3000", "ping_interval_s": "30"},
    }


@pytest.mark.parametrize(
    ("template", "variable"),
    [(_node_template(), "WS_PING_S"), (make_template(), "STICKYWS_PING_INTERVAL_S")],
    ids=["own-server", "reference-server"],
)
def test_assume_wins_over_the_rendered_value_and_says_so(template: dict[str, Any], variable: str) -> None:
    """--assume ping_interval_s=120 replaces the 30 s the container is given, fails the ping rule, and the audit
    names the value it replaced."""
    result = audit(view_from_template(template), {"ping_interval_s": "120"})
    assert result.settings["ping_interval_s"] == 120.0
    assert result.result("ping-within-idle-timeout").status is Status.FAIL
    assert [o.describe() for o in result.overrides] == [
        f"--assume ping_interval_s=120 overrides 30 from container variable {variable}"
    ]
    assert audit(view_from_template(template), {"ping_interval_s": "30"}).overrides == ()


def test_assume_wins_over_the_infrastructure_too() -> None:
    """An assumed infrastructure setting replaces the load balancer's value, and the report names the attribute."""
    result = audit(view_from_template(make_template()), {"idle_timeout_s": "50"})
    assert result.settings["idle_timeout_s"] == 50
    assert result.result("ping-within-idle-timeout").status is Status.FAIL
    assert [o.describe() for o in result.overrides] == [
        "--assume idle_timeout_s=50 overrides 120 from load balancer attribute idle_timeout.timeout_seconds"
    ]


def test_assumed_setting_of_your_server_counts_as_told() -> None:
    """A setting your server is not told is judged once --assume vouches for it (drain 500 s > delay 60 s fails)."""
    result = audit(view_from_template(_node_template()), {"drain_window_s": "500"})
    assert result.result("drain-within-deregistration-delay").status is Status.FAIL
    assert result.overrides == ()  # nothing was read for it: the STICKYWS_DRAIN_WINDOW_S leftover is not the server's


def test_registry_url_in_the_container_brings_the_registry_rules() -> None:
    """A REDIS_URL given to your server makes the registry a part: its rules run instead of being skipped."""
    template = _node_template()
    (container,) = template["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"]
    container["Environment"].append({"Name": "REDIS_URL", "Value": {"Fn::Join": ["", ["rediss://", "x"]]}})
    view = view_from_template(template)
    assert view.task_definition is not None
    assert view.task_definition.container is not None
    assert view.task_definition.container.registry_url is True
    assert "REDIS_URL" not in view.task_definition.container.environment  # its value may hold a password
    result = audit(view)
    assert Scope.REGISTRY in result.parts
    assert result.result("registry-auth").status is Status.PASS
    assert result.result("registry-encryption-and-auth").status is Status.WARN
    assert result.notes == ("no ElastiCache replication group or Serverless cache in the template (registry not read)",)


def test_unparsable_value_your_server_is_told_is_reported_and_the_rest_is_read() -> None:
    """WS_PING_S=soon fails readable-values naming the setting; PORT is still read, and the ping rule says it
    judged the default instead."""
    template = _node_template()
    (container,) = template["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"]
    for entry in container["Environment"]:
        if entry["Name"] == "WS_PING_S":
            entry["Value"] = "soon"
    result = audit(view_from_template(template))
    assert result.server_read == {"port": "3000"}
    row = result.result("readable-values")
    assert row.status is Status.FAIL
    assert row.found.startswith("container environment: ping_interval_s='soon'")
    assert "assumed, not observed: ping_interval_s=30" in result.result("ping-within-idle-timeout").found


def test_readme_shows_the_report_of_its_example(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The README's audit example (a Node server's ALB idle timeout of 100 s against its told ping of 60 s) is
    this report, line for line after the first."""
    settings = NODE.with_overrides({"idle_timeout_s": 100, "ping_interval_s": 60})
    code, out = _run(["--template", _write(tmp_path, make_own_server_template(settings))], capsys)
    assert code == 1
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    assert "\n".join(out.splitlines()[1:]) in readme
