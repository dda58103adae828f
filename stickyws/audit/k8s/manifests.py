"""Read Kubernetes manifests: multi-document YAML (or JSON) into a flat list of :class:`Manifest` objects.

Takes what ``kubectl get -o yaml`` (a ``kind: List`` with ``items``), ``helm template`` (comments,
``---`` separators, empty documents) and ``kustomize build`` print; ``-`` reads standard input.
Anything else raises :class:`ManifestError` with one line that names the file and what to pass instead.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stickyws.errors import AuditError

#: What ``FILE`` means standard input.
STDIN = "-"


class ManifestError(AuditError):
    """The manifests cannot be read, or hold no WebSocket workload; the message says which and what to do."""


@dataclass(frozen=True, eq=False)
class Manifest:
    """One Kubernetes object as the manifests give it (compared by identity: two objects may be alike).

    ``namespace`` is ``None`` when the manifest leaves it to ``kubectl -n`` (``helm template`` output);
    ``body`` is the whole object; ``source`` the file it came from (``-`` for standard input).
    """

    kind: str
    api_version: str
    name: str
    namespace: str | None
    body: Mapping[str, Any] = field(repr=False)
    source: str = ""

    @property
    def label(self) -> str:
        """``Kind name``, as the report names the object."""
        return f"{self.kind} {self.name}"

    @property
    def group(self) -> str:
        """The API group of ``apiVersion`` (``""`` for the core group): ``networking.k8s.io``, ``gateway.k8s.aws``."""
        return self.api_version.rpartition("/")[0]

    @property
    def metadata(self) -> Mapping[str, Any]:
        """``metadata`` (empty when absent)."""
        return mapping(self.body.get("metadata"))

    @property
    def annotations(self) -> Mapping[str, str]:
        """``metadata.annotations`` as text."""
        return {str(k): str(v) for k, v in mapping(self.metadata.get("annotations")).items()}

    @property
    def labels(self) -> Mapping[str, str]:
        """``metadata.labels`` as text."""
        return {str(k): str(v) for k, v in mapping(self.metadata.get("labels")).items()}

    @property
    def spec(self) -> Mapping[str, Any]:
        """``spec`` (empty when absent)."""
        return mapping(self.body.get("spec"))

    def same_namespace(self, other: Manifest) -> bool:
        """Whether both objects live in one namespace (an unset namespace matches any: ``kubectl -n`` decides)."""
        return self.namespace is None or other.namespace is None or self.namespace == other.namespace


def mapping(value: Any) -> Mapping[str, Any]:
    """``value`` when it is a mapping, else an empty one (manifests are read leniently, never trusted)."""
    return value if isinstance(value, Mapping) else {}


def sequence(value: Any) -> Sequence[Any]:
    """``value`` when it is a list, else an empty one."""
    return value if isinstance(value, list) else []


def load_manifests(paths: Iterable[str], stdin: Any = None) -> list[Manifest]:
    """Every object in the files at ``paths`` (``-``: ``stdin``, default ``sys.stdin``), ``List`` items flattened.

    Raises :class:`ManifestError` for a file that cannot be read or is not YAML, a document that is not
    a Kubernetes object, or files that hold no object at all.
    """
    found: list[Manifest] = []
    names = list(paths)
    for path in names:
        found += parse_manifests(_read(path, stdin), path)
    if not found:
        raise ManifestError(
            f"no Kubernetes object in {', '.join(names)}; pass what kubectl get -o yaml, helm template or "
            "kustomize build prints"
        )
    return found


def _read(path: str, stdin: Any) -> str:
    if path == STDIN:
        stream = stdin if stdin is not None else sys.stdin
        try:
            return str(stream.read())
        except UnicodeDecodeError:
            raise ManifestError("standard input is not text; pipe YAML manifests into --k8s -") from None
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ManifestError(f"{path} is not text; pass YAML manifests") from None
    except OSError as exc:
        raise ManifestError(f"cannot read {path}: {exc.strerror or exc}") from None


def parse_manifests(text: str, source: str = "manifests") -> list[Manifest]:
    """The objects of one multi-document YAML text; ``source`` names it in errors and in :attr:`Manifest.source`."""
    # Only when reading manifests: PyYAML is not needed by the rest of stickyws.
    try:
        import yaml
    except ImportError:  # pragma: no cover - PyYAML ships with the dev and k8s installs
        raise ManifestError("reading manifests needs PyYAML: pip install PyYAML") from None
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        documents = list(yaml.load_all(text, Loader=loader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        hint = "; it holds Helm template syntax: render it first (helm template)" if "{{" in text else ""
        raise ManifestError(f"{source} is not YAML: {problem}{where}{hint}") from None
    found: list[Manifest] = []
    for number, document in enumerate(documents, start=1):
        if document is None:
            continue  # an empty document: helm template prints them for templates that render nothing
        found += _objects(document, source, number)
    return found


def _objects(document: Any, source: str, number: int) -> Iterator[Manifest]:
    if not isinstance(document, Mapping) or not document.get("kind"):
        what = "a mapping without kind" if isinstance(document, Mapping) else f"a {type(document).__name__}"
        raise ManifestError(
            f"{source}: document {number} is {what}, not a Kubernetes object; pass what kubectl get -o yaml, "
            "helm template or kustomize build prints"
        )
    kind = str(document["kind"])
    if kind == "List" or (kind.endswith("List") and isinstance(document.get("items"), list)):
        for item in sequence(document.get("items")):
            yield from _objects(item, source, number)
        return
    metadata = mapping(document.get("metadata"))
    namespace = metadata.get("namespace")
    yield Manifest(
        kind=kind,
        api_version=str(document.get("apiVersion", "")),
        name=str(metadata.get("name", "?")),
        namespace=str(namespace) if namespace is not None else None,
        body=document,
        source=source,
    )
