"""Run the settings rules for a construct scope: errors stop the synth, warnings become annotations.

Every construct that takes :class:`stickyws.settings.Settings` calls :func:`apply_settings` once
for its own scope, so a construct used on its own (outside the reference stack) still refuses
settings that must not be deployed. The rules themselves live in :mod:`stickyws.settings.rules`;
nothing here judges a value.

Errors are checked on every call. Warnings and informational findings are annotated once per
stack and settings object (on the first construct that applies them), so a stack of four
constructs does not print the same finding four times.
"""

from __future__ import annotations

import hashlib

from aws_cdk import Annotations, Stack
from constructs import Construct, IConstruct

from stickyws.settings import Settings, Severity

#: Prefix of the annotation ids, e.g. ``stickyws:settings:ping-within-idle-timeout``; acknowledge one
#: with ``Annotations.of(scope).acknowledge_warning(id, reason)``.
ANNOTATION_PREFIX = "stickyws:settings"


def annotation_id(rule_id: str) -> str:
    """The annotation id under which findings of rule ``rule_id`` are reported."""
    return f"{ANNOTATION_PREFIX}:{rule_id}"


def apply_settings(scope: IConstruct, settings: Settings) -> None:
    """Check ``settings`` for ``scope``.

    Raises :class:`stickyws.settings.SettingsError` when any rule reports an error (``app.py``
    prints its message, which names each setting and its fix, and exits 1). Warnings become
    ``Annotations.of(scope).add_warning_v2`` (shown by ``cdk synth``, failing it under
    ``--strict``); informational findings (time to healthy, worst-case stop time) become info
    annotations. Both are added once per stack and settings object.
    """
    findings = settings.check()
    if _already_reported(scope, settings):
        return
    annotations = Annotations.of(scope)
    for finding in findings:
        if finding.severity is Severity.WARNING:
            annotations.add_warning_v2(annotation_id(finding.rule), finding.render())
        elif finding.severity is Severity.INFO:
            annotations.add_info_v2(annotation_id(finding.rule), finding.render())


def _already_reported(scope: IConstruct, settings: Settings) -> bool:
    """True if these settings were annotated in ``scope``'s stack before; marks them reported otherwise."""
    digest = hashlib.sha256(repr(sorted(settings.as_dict().items())).encode()).hexdigest()[:12]
    marker_id = f"StickywsSettingsReported{digest}"
    stack = Stack.of(scope)
    if stack.node.try_find_child(marker_id) is not None:
        return True
    Construct(stack, marker_id)
    return False
