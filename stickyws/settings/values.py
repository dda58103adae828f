"""Setting values as text and back: the one parser (:func:`parse_value`) and renderer (:func:`render_value`).

A leaf module: it needs only a field's :class:`~stickyws.settings.spec.FieldInfo` and the errors,
so the model parses overrides with it and the codec renders environments with it, and neither
imports the other.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from stickyws.settings.errors import SettingValueError
from stickyws.settings.spec import FieldInfo

#: Prefix of the environment variable that carries a setting to the reference server.
ENV_PREFIX = "STICKYWS_"
#: Texts that mean "disabled" for a nullable setting.
OFF_TEXTS = frozenset({"", "none", "off", "null", "disabled"})
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def env_name(name: str) -> str:
    """The environment variable that carries setting ``name`` to the reference server: ``STICKYWS_<NAME>``."""
    return ENV_PREFIX + name.upper()


def parse_value(info: FieldInfo, raw: Any) -> Any:
    """``raw`` (a string from the command line or environment, or a JSON/TOML value) as the field's type."""
    kind = info.type
    nullable = _is_optional(kind)
    if nullable:
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    if raw is None or (nullable and isinstance(raw, str) and raw.strip().lower() in OFF_TEXTS):
        if nullable:
            return None
        raise SettingValueError(info.name, raw, _expected(info))
    try:
        if kind is bool:
            return parse_bool(raw)
        if kind is int:
            if isinstance(raw, bool):
                raise ValueError
            if isinstance(raw, float) and not raw.is_integer():
                raise ValueError
            return int(raw)
        if kind is float:
            if isinstance(raw, bool):
                raise ValueError
            return float(raw)
        if kind is str:
            if not isinstance(raw, (str, int)) or isinstance(raw, bool):
                raise ValueError
            return str(raw)
        if typing.get_origin(kind) is tuple:
            if isinstance(raw, str):
                return tuple(part.strip() for part in raw.split(",") if part.strip())
            if isinstance(raw, (list, tuple)) and all(isinstance(x, str) for x in raw):
                return tuple(raw)
            raise ValueError
    except (TypeError, ValueError):
        raise SettingValueError(info.name, raw, _expected(info)) from None
    raise TypeError(f"no parser for {info.name}: {kind!r}")


def render_value(value: Any) -> str:
    """A setting value as environment/context text; :func:`parse_value` reads it back unchanged."""
    if value is None:
        return "off"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _is_optional(kind: Any) -> bool:
    origin = typing.get_origin(kind)
    return origin in (typing.Union, types.UnionType) and type(None) in typing.get_args(kind)


def parse_bool(raw: Any) -> bool:
    """``true/false``, ``1/0``, ``yes/no``, ``on/off`` (any case) or a bool; ``ValueError`` otherwise."""
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(raw)


def _expected(info: FieldInfo) -> str:
    kind = info.type
    names = {bool: "true or false", int: "a whole number", float: "a number", str: "text"}
    if _is_optional(kind):
        base = "a number or off"
    elif typing.get_origin(kind) is tuple:
        base = "a comma-separated list"
    else:
        base = names.get(kind, "text")
    if info.spec.choices:
        base = " | ".join(info.spec.choices)
    elif info.spec.lo is not None or info.spec.hi is not None:
        base = f"{base} ({info.spec.describe_range()})"
    return base
