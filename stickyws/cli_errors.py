"""What every ``stickyws`` sub-command shares with the dispatcher (:mod:`stickyws.cli`).

The sub-command modules (``stickyws.<package>.cli``) import this module, never :mod:`stickyws.cli`,
so the dispatcher sits above its commands and ``python -m stickyws.cli`` catches the very class the
commands raise.
"""

from __future__ import annotations

from stickyws.errors import StickywsError


class CommandError(StickywsError):
    """An error the user can act on; printed as ``stickyws: <message>`` with exit code ``code``."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code
