"""The reference CDK synth used by the whole suite: helpers behind the session fixtures in tests/conftest.py.

The app is built exactly as ``make synth`` builds it (``app.build`` with cdk.json's feature flags,
cdk-nag's AwsSolutions plugin included), plus a certificate ARN so the HTTPS listener and the
redirect exist, and with the built-in CloudFormation validation off for speed (the template is
identical either way; the CLI synth test in test_stack.py keeps it on).

Session fixtures (tests/conftest.py), visible to every test folder:

* ``reference_template`` -- ``aws_cdk.assertions.Template`` of ``StickyWebSocketStack``;
* ``reference_template_json`` -- the same template as a dict;
* ``reference_stack`` -- the ``StickyWebSocketStack`` construct (its public attributes);
* ``reference_outdir`` -- the cloud assembly directory (``validation-report.json`` lives there);
* ``cdk_context`` -- cdk.json's context (feature flags), to build further apps the same way.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

REPO_ROOT = Path(__file__).resolve().parents[1]
#: A syntactically valid ACM ARN: the listener only references it, nothing looks it up.
REFERENCE_CERTIFICATE_ARN = "arn:aws:acm:eu-west-1:123456789012:certificate/11111111-2222-3333-4444-555555555555"
#: Context of the reference synth on top of cdk.json's.
REFERENCE_CONTEXT: Mapping[str, Any] = {"certificate_arn": REFERENCE_CERTIFICATE_ARN}


def load_cdk_context() -> dict[str, Any]:
    """The ``context`` block of cdk.json (feature flags), which a bare ``App()`` would not read."""
    data = json.loads((REPO_ROOT / "cdk.json").read_text(encoding="utf-8"))
    return dict(data["context"])


def new_app(outdir: Path, context: Mapping[str, Any] | None = None, *, validation: bool = False) -> Any:
    """An ``App`` configured like the CLI's (cdk.json context), writing to ``outdir``."""
    from aws_cdk import App

    merged = {**load_cdk_context(), **(context or {})}
    return App(context=merged, outdir=str(outdir), builtin_cloud_formation_validation=validation)


@dataclass(frozen=True)
class ReferenceSynth:
    """The result of the one reference synth of the session."""

    stack: Any
    template: Any
    template_json: dict[str, Any]
    outdir: Path


def synthesize_reference(outdir: Path) -> ReferenceSynth:
    """Build the reference app like ``make synth`` (plus a certificate) and synthesize it into ``outdir``."""
    from aws_cdk.assertions import Template

    import app as cdk_app

    application = new_app(outdir, REFERENCE_CONTEXT)
    stack = cdk_app.build(application)
    template_json = application.synth().get_stack_by_name(stack.stack_name).template
    return ReferenceSynth(
        stack=stack,
        template=Template.from_json(template_json),
        template_json=template_json,
        outdir=outdir,
    )
