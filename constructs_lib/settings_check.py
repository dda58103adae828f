"""Run the settings rules for a construct scope: errors stop the synth, warnings become annotations.

Every construct that takes :class:`stickyws.settings.Settings` calls :func:`apply_settings` once
for its own scope, so a construct used on its own (outside the reference stack) still refuses
settings that must not be deployed. The rules themselves live in :mod:`stickyws.settings.rules`;
nothing here judges a value.
"""

from __future__ import annotations

from aws_cdk import Annotations
from constructs import IConstruct

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
    ``Annotations.of(scope).add_warning_v2``, shown by ``cdk synth`` and failing it under
    ``--strict``; informational findings (time to healthy, worst-case stop time) become info
    annotations.
    """
    annotations = Annotations.of(scope)
    for finding in settings.check():
        if finding.severity is Severity.WARNING:
            annotations.add_warning_v2(annotation_id(finding.rule), finding.render())
        elif finding.severity is Severity.INFO:
            annotations.add_info_v2(annotation_id(finding.rule), finding.render())
