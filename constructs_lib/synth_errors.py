"""Settings errors end a CDK app with one message and exit status 1, never a traceback.

Importing :mod:`constructs_lib` calls :func:`install_settings_error_hook`: an uncaught
:class:`stickyws.settings.SettingsError` (a construct refusing settings that must not be deployed)
is printed as ``stickyws: <message>`` on stderr, and Python ends with status 1 as it does for any
uncaught exception. Every other exception goes to the hook that was installed before, so a bug
still shows its traceback. An app that catches ``SettingsError`` itself (the reference ``app.py``
does) is unaffected.
"""

from __future__ import annotations

import sys
from types import TracebackType

from stickyws.settings import SettingsError

#: Prefix of the line an uncaught settings error prints.
MESSAGE_PREFIX = "stickyws: "


class _SettingsErrorHook:
    """``sys.excepthook`` that prints a :class:`SettingsError` and hands anything else to ``previous``."""

    def __init__(self, previous: object) -> None:
        self.previous = previous

    def __call__(self, exc_type: type[BaseException], exc: BaseException, traceback: TracebackType | None) -> None:
        if isinstance(exc, SettingsError):
            sys.stdout.flush()
            print(f"{MESSAGE_PREFIX}{exc}", file=sys.stderr, flush=True)
            return
        previous = self.previous if callable(self.previous) else sys.__excepthook__
        previous(exc_type, exc, traceback)


def install_settings_error_hook() -> None:
    """Make an uncaught ``SettingsError`` print its message only; idempotent."""
    if not isinstance(sys.excepthook, _SettingsErrorHook):
        sys.excepthook = _SettingsErrorHook(sys.excepthook)
