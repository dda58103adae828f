"""What a settings rule reports: a :class:`Finding` of some :class:`Severity`.

A leaf module (standard library only): the model, the codec, the errors and the rules all import
it, and it imports none of them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Severity(enum.Enum):
    """How much a finding matters: errors stop a synth, warnings are printed, info is reported."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


@dataclass(frozen=True)
class Finding:
    """One thing a rule has to say: what is wrong (or worth knowing) and how to fix it."""

    rule: str
    severity: Severity
    message: str
    fix: str = ""
    settings: tuple[str, ...] = ()

    def render(self) -> str:
        """One line: ``[rule] message -> fix``."""
        text = f"[{self.rule}] {self.message}"
        return f"{text} -> {self.fix}" if self.fix else text
