"""The auditor's verdict on a template or a deployed stack, as an :class:`~stickyws.audit.Audit` value.

Exactly what ``stickyws audit`` runs (:func:`stickyws.audit.audit`: the settings model's rules plus
the deployment checks). :mod:`stickyws.testing.deployment` and :mod:`stickyws.testing.readiness` build
on these two functions; this module imports neither of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stickyws.audit.checks import Audit, audit
from stickyws.audit.from_template import load_template, view_from_template


def audit_template(template: Mapping[str, Any] | str | Path | Any, assume: Mapping[str, str] | None = None) -> Audit:
    """The audit of a synthesized template: a dict, the path of a template JSON file, or an object with
    ``to_json()`` (``aws_cdk.assertions.Template``)."""
    if isinstance(template, (str, Path)):
        return audit(view_from_template(load_template(template), f"template {template}"), assume)
    if not isinstance(template, Mapping) and callable(getattr(template, "to_json", None)):
        template = template.to_json()
    if not isinstance(template, Mapping):
        raise TypeError(f"expected a template dict, a path or an object with to_json(), got {type(template).__name__}")
    return audit(view_from_template(template), assume)


def audit_deployment(session: Any, stack_name: str, assume: Mapping[str, str] | None = None) -> Audit:
    """The audit of stack ``stack_name`` read through ``session`` (moto or AWS): ``stickyws audit --stack-name``."""
    # Only to read a deployment: it loads boto3 (optional: the server extra), which auditing a template never needs.
    from stickyws.audit.from_aws import read_stack

    return audit(read_stack(session, stack_name), assume)
