"""Audit Kubernetes manifests: read them, find the deployment, judge it with the settings model's rules.

:func:`audit_manifests` is the whole pipeline; :func:`audit_objects` starts from objects already read.
The result is the same :class:`~stickyws.audit.checks.Audit` a template or a live stack gives, so the
report, ``--json`` and the exit codes are those of every other source. The fix of a failing or warning
rule ends with where the manifests write each setting it names.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from stickyws.audit.checks import Audit, CheckResult, Status, audit, parts_of
from stickyws.audit.k8s.checks import kubernetes_checks
from stickyws.audit.k8s.manifests import STDIN, Manifest, load_manifests
from stickyws.audit.k8s.mapping import Places, read_settings
from stickyws.audit.k8s.objects import find_deployment
from stickyws.settings import Scope

#: What a fix's pointer into the manifests starts with.
IN_MANIFESTS = "in the manifests: "


def describe_source(paths: Sequence[str]) -> str:
    """``manifests a.yaml, b.yaml`` (``-`` is ``standard input``), as the report's first line names them."""
    return "manifests " + ", ".join("standard input" if p == STDIN else p for p in paths)


def audit_manifests(paths: Sequence[str], assume: Mapping[str, str] | None = None, stdin: Any = None) -> Audit:
    """Read the manifests at ``paths`` (``-``: ``stdin``) and audit them.

    Raises :class:`~stickyws.audit.k8s.manifests.ManifestError` when they cannot be read or hold no
    workload, and :class:`stickyws.settings.UnknownSettingError` for an unknown name in ``assume``.
    """
    return audit_objects(load_manifests(paths, stdin), describe_source(paths), assume)


def audit_objects(objects: Sequence[Manifest], source: str, assume: Mapping[str, str] | None = None) -> Audit:
    """Audit the deployment among ``objects`` (see :func:`~stickyws.audit.k8s.objects.find_deployment`)."""
    deployment = find_deployment(objects, source)
    read = read_settings(deployment)
    assume = dict(assume or {})
    # A Kubernetes workload, never an ECS service: the ECS rules are skipped, the Kubernetes ones run.
    parts = (parts_of(read.view, assume) - {Scope.SERVICE}) | {Scope.KUBERNETES}
    result = audit(
        read.view, assume, observed=read.observed, parts=parts, checks=kubernetes_checks(deployment, read.places)
    )
    return dataclasses.replace(result, results=tuple(_pointed(result, read.places)))


def _pointed(result: Audit, places: Places) -> Iterable[CheckResult]:
    """Each row, the fix of a failing or warning rule followed by where the manifests write its settings."""
    findings = result.settings.validate(result.parts)
    for row in result.results:
        if row.kind != "setting" or row.status not in (Status.FAIL, Status.WARN) or not row.fix:
            yield row
            continue
        names = dict.fromkeys(n for f in findings if f.rule == row.rule for n in f.settings)
        where = [f"{name} at {places.where(name)}" for name in names if places.where(name)]
        if where:
            row = dataclasses.replace(row, fix=f"{row.fix}; {IN_MANIFESTS}{'; '.join(where)}")
        yield row
