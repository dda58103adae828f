"""Field specifications: unit, allowed range and documentation of each setting.

Every settings field is declared with :func:`setting`, which stores a :class:`Spec` in the
dataclass field's metadata. The range rule, the README table, the environment rendering and
the context overrides all read these specs, so a field is described exactly once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Spec:
    """What one setting means and which values it may take.

    ``lo``/``hi`` are inclusive bounds (``None``: unbounded); ``choices`` lists the allowed
    strings; ``source`` says whose limit the range is (``"AWS"`` for a service limit, or
    ``"stickyws"`` for this project's own sanity bound); ``nullable`` fields accept ``None``,
    which always means "disabled".
    """

    doc: str
    unit: str = ""
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] = ()
    source: str = "AWS"
    nullable: bool = False

    def describe_range(self) -> str:
        """The allowed values as a short human string, e.g. ``1-4000 s`` or ``lb_cookie | app_cookie``."""
        if self.choices:
            text = " | ".join(self.choices)
        elif self.lo is not None and self.hi is not None:
            text = f"{_num(self.lo)}-{_num(self.hi)}"
        elif self.lo is not None:
            text = f">= {_num(self.lo)}"
        elif self.hi is not None:
            text = f"<= {_num(self.hi)}"
        else:
            text = "any"
        if self.unit and not self.choices and text != "any":
            text = f"{text} {self.unit}"
        if self.nullable:
            text = f"{text}, or off"
        return text


@dataclass(frozen=True)
class FieldInfo:
    """Where a flat setting name lives and how it is described."""

    name: str
    group: str
    spec: Spec
    default: Any
    type: Any


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def setting(
    default: Any,
    doc: str,
    *,
    unit: str = "",
    lo: float | None = None,
    hi: float | None = None,
    choices: tuple[str, ...] = (),
    source: str = "AWS",
    nullable: bool = False,
) -> Any:
    """Declare a settings field with its default and its :class:`Spec`."""
    spec = Spec(doc=doc, unit=unit, lo=lo, hi=hi, choices=choices, source=source, nullable=nullable)
    return dataclasses.field(default=default, metadata={"spec": spec})


def spec_of(field: dataclasses.Field[Any]) -> Spec:
    """The :class:`Spec` of a field declared with :func:`setting`."""
    spec = field.metadata.get("spec")
    if not isinstance(spec, Spec):
        raise TypeError(f"field {field.name!r} was not declared with setting()")
    return spec
