"""Statically resolve the values of a CloudFormation template, as the template reader needs them.

Only what is statically resolvable is read: literals, ``Ref``/``Fn::GetAtt`` to a resource
(which become that resource's logical id, so references compare equal within the view) and
``Ref`` to a parameter with a ``Default``. Any other expression (``Fn::Join``, ``Fn::If``,
imports) is left unresolved and named in the notes; it never turns into a guess.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

#: The metadata key that holds a resource's CDK construct path.
CDK_PATH = "aws:cdk:path"


class TemplateValues:
    """The resources and parameters of one template, and the notes on what could not be resolved."""

    def __init__(self, resources: Mapping[str, Any], parameters: Mapping[str, Any]) -> None:
        self.resources = resources
        self.parameters = parameters
        self.notes: list[str] = []

    def text(self, value: Any, what: str = "") -> str | None:
        """``value`` as text if statically resolvable, else ``None`` (noted when ``what`` is given)."""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (str, int, float)):
            return str(value)
        if isinstance(value, Mapping) and len(value) == 1:
            (fn, arg), *_ = value.items()
            if fn == "Ref" and isinstance(arg, str):
                if arg in self.resources:
                    return arg
                param = self.parameters.get(arg)
                if isinstance(param, Mapping) and "Default" in param:
                    return self.text(param["Default"])
            if fn == "Fn::GetAtt":
                target = arg.split(".")[0] if isinstance(arg, str) else arg[0] if isinstance(arg, list) else None
                if isinstance(target, str) and target in self.resources:
                    return target
        if what:
            self.notes.append(f"{what} is not statically resolvable in the template: {json.dumps(value)[:80]}")
        return None

    def number(self, value: Any, what: str) -> int | None:
        text = self.text(value, what) if value is not None else None
        if text is None:
            return None
        try:
            return int(float(text))
        except ValueError:
            self.notes.append(f"{what}={text!r} is not a number")
            return None

    def path(self, logical_id: str) -> str | None:
        """The CDK construct path of a resource (its ``aws:cdk:path`` metadata), if the template has it."""
        resource = self.resources.get(logical_id)
        metadata = resource.get("Metadata") if isinstance(resource, Mapping) else None
        path = metadata.get(CDK_PATH) if isinstance(metadata, Mapping) else None
        return path if isinstance(path, str) else None

    def of_type(self, kind: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
        for logical_id, resource in self.resources.items():
            if isinstance(resource, Mapping) and resource.get("Type") == kind:
                props = resource.get("Properties")
                yield logical_id, props if isinstance(props, Mapping) else {}

    def flag(self, value: Any) -> bool | None:
        text = self.text(value) if value is not None else None
        return None if text is None else text.lower() == "true"

    def texts(self, values: Any) -> tuple[str, ...]:
        return tuple(t for t in (self.text(v) for v in values) if t is not None)
