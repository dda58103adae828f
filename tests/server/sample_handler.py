"""A user handler loaded by `stickyws serve --handler tests.server.sample_handler:shout` in the CLI test."""

from __future__ import annotations

from typing import Any

from stickyws.server.handler import HandlerContext, HandlerError


async def shout(ctx: HandlerContext, data: Any) -> list[Any]:
    """Upper-case text back, tagged with the user; anything else is refused with an error frame."""
    if not isinstance(data, str):
        raise HandlerError("not_text", "send a string")
    return [{"user": ctx.user_id, "text": data.upper()}]
