"""Every rendered document validates offline: built-in kinds with kubernetes-validate (strict), custom
resources with the controller's and the Gateway API's pinned CRD schemas; a broken document does not."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.k8s.conftest import COMBINATIONS, documents
from tests.k8s.schema_check import KUBERNETES_VERSIONS, crd_schemas, validate

CUSTOM = {"GatewayClass", "Gateway", "HTTPRoute", "LoadBalancerConfiguration", "TargetGroupConfiguration"}


@pytest.mark.parametrize(("api", "overrides"), COMBINATIONS)
def test_every_rendered_document_validates(api: str, overrides: dict[str, Any]) -> None:
    """Each document of each combination has a schema and matches it, on the oldest and newest Kubernetes."""
    docs = documents(api, overrides)
    assert {kind: validate(doc) for kind, doc in docs.items()} == {key: [] for key in docs}
    assert (set(docs) & CUSTOM) == (CUSTOM if api == "gateway" else set())


def test_tls_and_internal_variants_validate() -> None:
    """An HTTPS listener with a certificate and an internal scheme validate on both paths."""
    arn = "arn:aws:acm:eu-west-1:111122223333:certificate/abcd"
    for api in ("ingress", "gateway"):
        docs = documents(api, certificate_arn=arn, internet_facing=False)
        assert {kind: validate(doc) for kind, doc in docs.items()} == {key: [] for key in docs}


def test_pinned_schemas_cover_the_custom_kinds() -> None:
    """The pinned CRDs serve every custom kind rendered, at the version rendered."""
    rendered = {(d["apiVersion"], d["kind"]) for d in documents("gateway").values() if d["kind"] in CUSTOM}
    assert rendered <= set(crd_schemas())
    assert KUBERNETES_VERSIONS[0] == "1.30"


def _break(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    broken = copy.deepcopy(doc)
    *parents, last = path.split("/")
    node: Any = broken
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    node[last] = value
    return broken


@pytest.mark.parametrize(
    ("kind", "path", "value", "expected"),
    [
        (
            "Deployment",
            "spec/template/spec/containers/0/lifecycle/preStop/sleep/seconds",
            "15",
            "'15' is not of type 'integer'",
        ),
        ("Deployment", "spec/template/spec/terminationGracePeriod", 90, "'terminationGracePeriod' was unexpected"),
        ("PodDisruptionBudget", "spec/maxUnavailable", [1], "is not valid under any of the given schemas"),
        ("TargetGroupConfiguration", "spec/defaultConfiguration/targetType", "pod", "'pod' is not one of"),
        ("TargetGroupConfiguration", "spec/defaultConfiguration/stickiness", True, "'stickiness' was unexpected"),
        ("LoadBalancerConfiguration", "spec/scheme", "public", "'public' is not one of"),
        ("HTTPRoute", "spec/rules/0/backendRefs/0/port", "8080", "'8080' is not of type 'integer'"),
    ],
)
def test_a_broken_document_fails(kind: str, path: str, value: Any, expected: str) -> None:
    """A wrong type, an unknown field or a value outside an enum is reported, naming the field."""
    docs = documents("gateway", {"server_mode": "own"})
    problems = validate(_break(docs[kind], path, value))
    assert problems
    assert all(expected in p and path.rsplit("/", 1)[0] in p for p in problems), problems


def test_a_kind_without_schema_fails() -> None:
    """A document of a kind no schema knows is an error, not a silent pass."""
    namespace = documents("ingress")["Namespace"]
    assert validate({**namespace, "kind": "Namespaces"}) == [
        "no schema for v1 Namespaces (neither built in nor pinned)"
    ]
