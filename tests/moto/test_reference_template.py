"""`stickyws audit --template` on the synthesized reference stack, and on broken copies of it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from stickyws.audit.checks import Status, audit, catalog
from stickyws.audit.from_template import view_from_template
from stickyws.cli import main
from tests.audit.edits import MUTATIONS, container_settings

pytestmark = pytest.mark.synth


def test_reference_template_passes_every_check(
    reference_template_json: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The synthesized reference template passes every rule and check, read back as the settings it rendered."""
    result = audit(view_from_template(reference_template_json, "reference"))
    assert [(r.rule, r.status.value, r.found) for r in result.results if r.status is not Status.PASS] == []
    assert result.notes == ()
    rendered = container_settings(reference_template_json)
    assert result.settings == rendered
    path = tmp_path / "StickyWebSocketStack.template.json"
    path.write_text(json.dumps(reference_template_json), encoding="utf-8")
    assert main(["audit", "--template", str(path)]) == 0
    assert capsys.readouterr().out.rstrip().endswith(f"{len(catalog())} pass, 0 warn, 0 fail (exit 0)")


def test_reference_template_is_read_from_its_resources_not_its_environment(
    reference_template_json: dict[str, Any],
) -> None:
    """Every infrastructure setting of the reference view comes from a resource, none from an AWS default."""
    result = audit(view_from_template(reference_template_json))
    assert {n: o.where for n, o in result.observed.items() if o.aws_default} == {}
    assert result.observed["idle_timeout_s"].text == "120"
    assert result.observed["http2_enabled"].text == "false"
    assert result.observed["deregistration_delay_s"].text == "60"
    assert result.observed["stickiness_duration_s"].text == "86400"
    assert result.observed["stop_timeout_s"].text == "30"


@pytest.mark.parametrize("mutation", MUTATIONS, ids=lambda m: m.name)
def test_broken_reference_template_fails_its_rule(
    reference_template_json: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str], mutation: Any
) -> None:
    """Each broken copy of the reference template fails exactly its rules and the CLI exits 1."""
    path = tmp_path / "broken.template.json"
    path.write_text(json.dumps(mutation.edit(reference_template_json)), encoding="utf-8")
    code = main(["audit", "--template", str(path), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1
    assert {r["rule"] for r in report["results"] if r["status"] == "fail"} == mutation.failing
