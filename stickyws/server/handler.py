"""The application handler: the one place users plug their own logic into the reference server.

A handler is any async callable ``handler(ctx, data) -> outputs``:

* ``ctx`` (:class:`HandlerContext`) says who sent it (user, session, subscriptions, server);
* ``data`` is the ``data`` of a client ``send`` frame (any JSON value);
* it returns a sequence of JSON values; each is sent back as a ``message`` frame with the
  session's next ``seq``, and only then is the client's message acknowledged. (With the setting
  ``inbound_delivery=at_most_once`` nothing is committed: the replies go out without ``seq`` and a
  message resent after a reconnect is handled again.)

The server commits "message ``id`` handled, ``len(outputs)`` seqs used" atomically with the
duplicate check, AFTER the handler returns. So a handler must not have side effects that cannot
be repeated: if two servers race on the same resent message, both may call the handler, but only
one commit wins and only its outputs are sent. Keep side effects idempotent (keyed by
``ctx.session_id`` and ``ctx.msg_id``) or defer them to the outputs. Raising
:class:`HandlerError` sends an ``error`` frame for that message and does NOT mark it handled.

``subscribe``/``unsubscribe`` are handled by the server itself (the session's topic set).
Load your own with ``stickyws serve --handler package.module:attribute``.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

from stickyws.errors import ReferenceServerError


class HandlerContext(NamedTuple):
    """Who a message comes from (immutable; a named tuple, since one is made per client message and a
    frozen dataclass costs three times as much to make)."""

    server_id: str
    user_id: str
    session_id: str
    msg_id: int
    subscriptions: frozenset[str]


class HandlerError(ReferenceServerError):
    """Raised by a handler to answer one message with an ``error`` frame (``code``, message)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Handler(Protocol):
    """``async (ctx, data) -> outputs`` (see the module docstring)."""

    async def __call__(self, ctx: HandlerContext, data: Any) -> Sequence[Any]: ...


async def echo_handler(ctx: HandlerContext, data: Any) -> Sequence[Any]:
    """The reference handler: send the data back once."""
    return [data]


def load_handler(spec: str) -> Handler:
    """Import ``module:attribute``; raises ``ValueError`` with what to fix."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"handler {spec!r} must look like package.module:attribute")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import handler module {module_name!r}: {exc}") from None
    handler = getattr(module, attr, None)
    if not callable(handler):
        raise ValueError(f"{spec!r} is not a callable in {module_name}")
    result: Handler = handler
    return result
