"""Offline schema checks of Kubernetes objects: built-in kinds with kubernetes-validate, custom resources with
the pinned CRD schemas of tests/k8s/schemas (see SOURCE.md there)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

SCHEMAS = Path(__file__).parent / "schemas"
PRESERVE = "x-kubernetes-preserve-unknown-fields"
#: Kubernetes versions the built-in kinds are checked against: the oldest this project renders for (the
#: preStop sleep action is on by default from 1.30) and the newest kubernetes-validate knows.
KUBERNETES_VERSIONS = ("1.30", kubernetes_validate.latest_version())


@functools.cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """``{(apiVersion, kind): openAPIV3Schema}`` of every served version of every pinned CRD."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(SCHEMAS.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text(encoding="utf-8"))
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if version.get("served"):
                found[(f"{group}/{version['name']}", kind)] = version["schema"]["openAPIV3Schema"]
    return found


def _reject_unknown_fields(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with ``additionalProperties: false`` wherever an object lists its properties (as an API server
    prunes, or with strict field validation refuses, unknown fields); ``metadata`` is left open."""
    schema = dict(schema)
    if "properties" in schema and "additionalProperties" not in schema and not schema.get(PRESERVE):
        schema["additionalProperties"] = False
    for key in ("properties",):
        if key in schema:
            schema[key] = {
                name: (sub if name == "metadata" else _reject_unknown_fields(sub)) for name, sub in schema[key].items()
            }
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            schema[key] = _reject_unknown_fields(schema[key])
    return schema


def validate(document: dict[str, Any]) -> list[str]:
    """What is wrong with ``document`` (empty when it validates), against every version in KUBERNETES_VERSIONS
    for a built-in kind, or its pinned CRD schema. A kind with no schema at all is an error too."""
    key = (document.get("apiVersion", ""), document.get("kind", ""))
    schema = crd_schemas().get(key)
    if schema is not None:
        validator = jsonschema.Draft7Validator(_reject_unknown_fields(schema))
        return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]
    problems = []
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"Kubernetes {version}: {'/'.join(map(str, exc.path))}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(f"no schema for {key[0]} {key[1]} (neither built in nor pinned)")
            break
    return problems
