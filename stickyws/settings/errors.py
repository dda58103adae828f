"""Errors raised by the settings model.

Hierarchy (:class:`~stickyws.errors.StickywsError` is the root of every stickyws error)::

    StickywsError, ValueError
    └── SettingsError               one or more rules reported an error (``.findings``)
        ├── UnknownSettingError     a flat name that no group declares
        └── SettingValueError       a value that cannot be parsed for its field
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence

from stickyws.errors import StickywsError
from stickyws.settings.findings import Finding, Severity


class SettingsError(StickywsError, ValueError):
    """Settings that must not be deployed; the message names each setting and its fix."""

    def __init__(self, findings: Sequence[Finding]) -> None:
        self.findings = tuple(findings)
        lines = [f"{len(self.findings)} settings error(s):"]
        lines += [f"  - {f.render()}" for f in self.findings]
        super().__init__("\n".join(lines))


class UnknownSettingError(SettingsError):
    """A setting name that the model does not declare."""

    def __init__(self, name: str, known: Iterable[str] = ()) -> None:
        close = difflib.get_close_matches(name, list(known), n=3)
        hint = f"did you mean {' or '.join(close)}?" if close else "see the settings table in README.md"
        self.name = name
        super().__init__(
            [
                Finding(
                    rule="known-setting",
                    severity=Severity.ERROR,
                    message=f"unknown setting {name!r}",
                    fix=hint,
                    settings=(name,),
                )
            ]
        )


class SettingValueError(SettingsError):
    """A value that cannot be read as the field's type."""

    def __init__(self, name: str, raw: object, expected: str) -> None:
        super().__init__(
            [
                Finding(
                    rule="parsable-value",
                    severity=Severity.ERROR,
                    message=f"{name}={raw!r} is not {expected}",
                    fix=f"give {name} {expected}",
                    settings=(name,),
                )
            ]
        )
