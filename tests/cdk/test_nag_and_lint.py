"""Checks on the synthesized output: cdk-nag, cfn-lint, the docs table, the package split."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import Stack
from aws_cdk import aws_s3 as s3

from constructs_lib.nag import acknowledge, add_aws_solutions_checks
from tests.cdk_reference import REPO_ROOT, new_app


def _report(outdir: Path) -> dict[str, Any]:
    return json.loads((outdir / "validation-report.json").read_text(encoding="utf-8"))


def _aws_solutions(report: dict[str, Any]) -> dict[str, Any]:
    (plugin,) = [p for p in report["pluginReports"] if p["pluginName"] == "AwsSolutions"]
    return plugin


# -- cdk-nag --------------------------------------------------------------------------------------------


def test_reference_app_passes_aws_solutions_checks(reference_outdir: Path) -> None:
    """The reference synth ran cdk-nag's AwsSolutions pack and it reported no unacknowledged finding."""
    plugin = _aws_solutions(_report(reference_outdir))
    assert plugin["conclusion"] == "success"
    assert plugin["violations"] == []


def test_every_acknowledgement_has_a_reason(reference_outdir: Path) -> None:
    """Each acknowledged AwsSolutions finding carries a reason of at least a sentence, on a named construct."""
    suppressed = _aws_solutions(_report(reference_outdir))["suppressedViolations"]
    assert suppressed, "the reference stack acknowledges at least the log bucket's S1"
    for finding in suppressed:
        assert len(finding["reason"].split()) >= 8, finding
        assert finding["acknowledgedAt"].startswith("StickyWebSocketStack/"), finding
    rules = {f["ruleName"] for f in suppressed}
    assert {"AwsSolutions-S1", "AwsSolutions-EC23"} <= rules


def test_nag_plugin_fails_a_non_compliant_stack(tmp_path: Path) -> None:
    """The same wiring fails the synth for a bucket without TLS enforcement (so the pass above means something)."""
    app = new_app(tmp_path)
    add_aws_solutions_checks(app)
    stack = Stack(app, "NonCompliant")
    bucket = s3.Bucket(stack, "Bucket")
    acknowledge(bucket, "AwsSolutions-S1", "Access logging is out of scope for this negative control test.")
    with pytest.raises(RuntimeError, match=r"(?s)ValidationFailed.*AwsSolutions-S10"):
        app.synth()
    plugin = _aws_solutions(_report(tmp_path))
    assert plugin["conclusion"] == "failure"
    assert [v["ruleName"] for v in plugin["violations"]] == ["AwsSolutions-S10"]


def test_acknowledge_requires_a_reason(tmp_path: Path) -> None:
    """An acknowledgement without a reason is refused."""
    stack = Stack(new_app(tmp_path), "NoReason")
    with pytest.raises(ValueError, match="needs a reason"):
        acknowledge(stack, "AwsSolutions-S1", "  ")


# -- cfn-lint (the built-in validation runs in the CLI synth of test_stack.py) ---------------------------------


def test_cfn_lint_reports_no_error(reference_template_json: dict[str, Any]) -> None:
    """cfn-lint (as a library) finds no error in the reference template; warnings are CDK's own dependencies."""
    from cfnlint.api import lint

    matches = lint(json.dumps(reference_template_json))
    errors = [f"{m.rule.id} {m.message}" for m in matches if m.rule.severity == "error"]
    assert errors == []


# -- docs and package boundaries -------------------------------------------------------------------------


def _settings_table_module() -> Any:
    spec = importlib.util.spec_from_file_location("settings_table", REPO_ROOT / "scripts" / "settings_table.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_settings_table_in_docs_is_up_to_date() -> None:
    """README.md holds exactly the settings and rules tables scripts/settings_table.py generates from the model."""
    module = _settings_table_module()
    doc = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert module.update(doc) == doc, "run: python scripts/settings_table.py --update README.md"


def test_settings_table_lists_every_setting_with_default_and_range() -> None:
    """Every setting of the model has a row; idle timeout shows default 120 and the AWS range 1-4000 s."""
    from stickyws.settings import FIELDS

    table = _settings_table_module().render_table()
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == list(FIELDS)
    idle = next(row for row in rows if row.startswith("| `idle_timeout_s`"))
    assert "| `120` | 1-4000 s (AWS) |" in idle


def test_stickyws_never_imports_aws_cdk() -> None:
    """No module under stickyws/ imports aws_cdk, constructs or cdk_nag (the runtime stays CDK-free)."""
    forbidden = ("aws_cdk", "constructs", "cdk_nag")
    offenders = []
    for path in sorted((REPO_ROOT / "stickyws").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.relative_to(REPO_ROOT)}: {n}" for n in names if n.split(".")[0] in forbidden]
    assert offenders == []


def test_cdk_side_needs_only_the_cdk_extra() -> None:
    """Importing the constructs, the stack and app.py loads none of the server-only packages.

    The ``[cdk]`` extra (aws-cdk-lib, constructs, cdk-nag, redis for the Lambda bundle) must be enough
    to synthesize: a fresh interpreter imports them and reports which server packages got loaded.
    """
    code = (
        "import sys, constructs_lib, stacks, app\n"
        "server_only = {'aiohttp', 'uvloop', 'jwt', 'boto3', 'botocore', 'moto'}\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & server_only))\n"
    )
    env = {**os.environ, "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == "[]"
