"""Run the settings rules of a construct's parts: errors stop the synth, warnings become annotations.

Every construct that takes :class:`stickyws.settings.Settings` calls :func:`apply_settings` for the
parts of a deployment it builds (``parts``, from :data:`stickyws.settings.PARTS`):

========================================  ===============================================
construct                                 parts
========================================  ===============================================
``StickyWebSocketLoadBalancer``           ``LOAD_BALANCER``
``WebSocketFargateService``               ``SERVICE``, ``SERVER``
``StickyWebSocketLoadBalancer.attach``    ``LOAD_BALANCER``, ``SERVICE``, ``SERVER`` (the
                                          load balancer's values with the service's settings)
``ConnectionRegistry``                    the rules about ``REGISTRY`` (with ``SERVICE`` and
                                          ``SERVER`` where such a rule reads them)
``WebSocketObservability``                ``LOAD_BALANCER``, ``SERVICE``
the reference stack                       every part, once
========================================  ===============================================

So a construct used on its own still refuses settings that must not be deployed, and never judges
a part it does not have. The rules themselves live in :mod:`stickyws.settings.rules`; nothing here
judges a value.

Errors are checked on every call. Warnings and informational findings are annotated once per stack
(on the first construct that reports them), so a stack of four constructs does not print the same
finding four times. At synthesis, the rules that no construct of the stack judged are named in ONE
info annotation, ``stickyws:settings-skipped``, each with its reason (no registry in this stack,
your own server is not told a setting, ...); :func:`skipped_in_stack` returns them, and each
construct's ``skipped_rules()`` lists its own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

import jsii
from aws_cdk import Annotations, Aspects, IAspect, Stack
from constructs import Construct, IConstruct

from stickyws.settings import RULES, Finding, RulePlan, Scope, Settings, SettingsError, Severity, validate
from stickyws.settings.scopes import STACK_PARTS

#: Prefix of the annotation ids, e.g. ``stickyws:settings:ping-within-idle-timeout``; acknowledge one
#: with ``Annotations.of(scope).acknowledge_warning(id, reason)``.
ANNOTATION_PREFIX: Final = "stickyws:settings"
#: Id of the one info annotation that names the rules no construct of a stack judged.
SKIPPED_ID: Final = "stickyws:settings-skipped"
_LEDGER_ID: Final = "StickywsSettingsLedger"


def annotation_id(rule_id: str) -> str:
    """The annotation id under which findings of rule ``rule_id`` are reported."""
    return f"{ANNOTATION_PREFIX}:{rule_id}"


class SettingsMismatchError(SettingsError):
    """Settings of two constructs that each pass alone but contradict each other (e.g. at ``attach``).

    The message starts with ``context`` (which constructs, which of their settings), then lists each
    finding with its fix like any :class:`SettingsError`.
    """

    def __init__(self, findings: Sequence[Finding], context: str) -> None:
        super().__init__(findings)
        self.context = context
        self.args = (f"{context}:\n{self.args[0]}",)


@dataclass(frozen=True)
class SettingsVerdict:
    """What :func:`apply_settings` judged for one construct: the plan and the rules it left out.

    ``plan`` is :meth:`Settings.plan` for the construct's parts; ``rule_ids`` the rules it ran (with
    ``about``, only those speaking of that scope).
    """

    plan: RulePlan
    rule_ids: tuple[str, ...]
    about: Scope | None = None

    def skipped_rules(self) -> list[str]:
        """``rule-id: reason`` for every rule this construct did not judge (with ``about``: of that scope)."""
        return [
            f"{s.rule.id}: {s.reason}" for s in self.plan.skipped if self.about is None or self.about in s.rule.scopes
        ]


def apply_settings(
    scope: IConstruct,
    settings: Settings,
    parts: Iterable[Scope] | None = None,
    *,
    about: Scope | None = None,
) -> SettingsVerdict:
    """Check ``settings`` for a construct that has ``parts`` (default: every part of the reference stack).

    ``about``: judge only the rules whose scopes include it (``ConnectionRegistry`` names
    ``Scope.REGISTRY`` with the parts those rules read). Raises
    :class:`stickyws.settings.SettingsError` when a rule reports an error (the message names each
    setting and its fix; importing :mod:`constructs_lib` makes an uncaught one end the app with that
    message and exit status 1). Warnings become ``Annotations.of(scope).add_warning_v2`` (shown by
    ``cdk synth``, failing it under ``--strict``); informational findings (time to healthy,
    worst-case stop time) become info annotations. Each finding is added once per stack.
    """
    chosen = frozenset(STACK_PARTS if parts is None else parts)
    plan = settings.plan(chosen)
    rule_ids = tuple(r.id for r in plan.applied if about is None or about in r.scopes)
    findings = validate(settings, rule_ids, parts=chosen)
    errors = [f for f in findings if f.severity is Severity.ERROR]
    if errors:
        raise SettingsError(errors)
    ledger = _ledger(scope)
    ledger.record(settings, chosen, rule_ids)
    annotations = Annotations.of(scope)
    for finding in findings:
        if not ledger.first_report(finding.rule, finding.render()):
            continue
        if finding.severity is Severity.WARNING:
            annotations.add_warning_v2(annotation_id(finding.rule), finding.render())
        elif finding.severity is Severity.INFO:
            annotations.add_info_v2(annotation_id(finding.rule), finding.render())
    return SettingsVerdict(plan, rule_ids, about)


@dataclass
class _Judged:
    settings: Settings
    parts: set[Scope] = field(default_factory=set)


class _SettingsLedger(Construct):
    """Per stack: the findings already annotated, and which rules the stack's constructs judged."""

    def __init__(self, stack: Stack) -> None:
        super().__init__(stack, _LEDGER_ID)
        self.reported: set[tuple[str, str]] = set()
        self.applied: set[str] = set()
        self.judged: dict[str, _Judged] = {}
        Aspects.of(stack).add(_AnnotateSkipped(self))

    def record(self, settings: Settings, parts: frozenset[Scope], rule_ids: Iterable[str]) -> None:
        self.applied.update(rule_ids)
        digest = hashlib.sha256(repr(sorted(settings.as_dict().items())).encode()).hexdigest()
        self.judged.setdefault(digest, _Judged(settings)).parts.update(parts)

    def first_report(self, rule_id: str, text: str) -> bool:
        """True the first time this finding is seen in the stack."""
        key = (rule_id, text)
        if key in self.reported:
            return False
        self.reported.add(key)
        return True

    def unjudged(self) -> dict[str, str]:
        """``{rule id: reason}`` of the rules no construct of the stack ran, in registration order."""
        reasons: dict[str, str] = {}
        # The widest judgement first: its reason says what is missing even with every part built.
        for judged in sorted(self.judged.values(), key=lambda j: -len(j.parts)):
            for skipped in judged.settings.plan(judged.parts).skipped:
                if skipped.rule.id not in self.applied:
                    reasons.setdefault(skipped.rule.id, skipped.reason)
        return {rule_id: reasons[rule_id] for rule_id in RULES if rule_id in reasons}


@jsii.implements(IAspect)
class _AnnotateSkipped:
    """At synthesis, one info annotation on the stack naming the rules no construct judged, with reasons."""

    def __init__(self, ledger: _SettingsLedger) -> None:
        self._ledger = ledger
        self._done = False

    def visit(self, node: IConstruct) -> None:
        if self._done or not isinstance(node, Stack):
            return
        self._done = True
        unjudged = self._ledger.unjudged()
        if unjudged:
            by_reason: dict[str, list[str]] = {}
            for rule_id, reason in unjudged.items():
                by_reason.setdefault(reason, []).append(rule_id)
            listed = "; ".join(f"{', '.join(ids)} ({reason})" for reason, ids in by_reason.items())
            Annotations.of(node).add_info_v2(SKIPPED_ID, f"{len(unjudged)} settings rules not judged: {listed}")


def _ledger(scope: IConstruct) -> _SettingsLedger:
    stack = Stack.of(scope)
    found = stack.node.try_find_child(_LEDGER_ID)
    if isinstance(found, _SettingsLedger):
        return found
    return _SettingsLedger(stack)


def skipped_in_stack(stack: Stack) -> dict[str, str]:
    """``{rule id: reason}`` of the rules no construct of ``stack`` has judged so far."""
    found = stack.node.try_find_child(_LEDGER_ID)
    return found.unjudged() if isinstance(found, _SettingsLedger) else {}
