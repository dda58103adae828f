"""Is a stack WebSocket-ready? The auditor's rules on a template or a moto deployment, as a test assertion.

:func:`assert_websocket_ready` runs exactly what ``stickyws audit`` runs (:func:`stickyws.audit.audit`,
the settings model's rules plus the deployment checks) and raises :class:`NotWebSocketReady`, an
``AssertionError`` whose message is the audit table, when any check fails.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stickyws.audit.checks import Audit, Status
from stickyws.audit.report import render_table
from stickyws.errors import StackTestingError
from stickyws.testing.audits import audit_deployment, audit_template
from stickyws.testing.deployment import MotoDeployment

__all__ = ["NotWebSocketReady", "assert_websocket_ready", "audit_deployment", "audit_template"]


class NotWebSocketReady(StackTestingError, AssertionError):
    """A stack failed the audit; ``.audit`` holds the result and the message is its table."""

    def __init__(self, result: Audit, *, strict: bool) -> None:
        self.audit = result
        what = "failed or warned" if strict else "failed"
        bad = [r.rule for r in result.results if r.status is Status.FAIL or (strict and r.status is Status.WARN)]
        super().__init__(f"{result.source} is not WebSocket-ready: {', '.join(bad)} {what}\n{render_table(result)}")


def assert_websocket_ready(
    target: Mapping[str, Any] | str | Path | MotoDeployment | Audit | Any,
    *,
    assume: Mapping[str, str] | None = None,
    strict: bool = False,
) -> Audit:
    """Fail with the audit table unless ``target`` passes every check; returns the audit.

    :param target: a template (dict, JSON file path, or ``aws_cdk.assertions.Template``), a
        :class:`~stickyws.testing.MotoDeployment`, or an :class:`~stickyws.audit.Audit` already made.
    :param assume: application settings to assume where the container does not show them (as
        ``stickyws audit --assume NAME=VALUE``).
    :param strict: also fail on warnings (``warn`` rows), not only on failures.
    """
    if isinstance(target, Audit):
        result = target
    elif isinstance(target, MotoDeployment):
        result = target.audit(assume)
    else:
        result = audit_template(target, assume)
    if result.failed() or (strict and any(r.status is Status.WARN for r in result.results)):
        raise NotWebSocketReady(result, strict=strict)
    return result
