"""The client keeps the resume token the server sent, and no token when the server sent none."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs, urlsplit

import pytest

from stickyws.client.connection import StickyClient


def _connected(**fields: object) -> dict[str, object]:
    return {"type": "connected", "serverId": "s1", "sessionId": "sess", "resumed": False, "lastClientId": 0, **fields}


@pytest.mark.parametrize("missing", [{}, {"resumeToken": None}, {"resumeToken": ""}])
def test_a_connected_frame_without_a_resume_token_leaves_none(missing: dict[str, object]) -> None:
    """A `connected` frame with no (or an empty) resumeToken stores None, not the text "None", and the
    next handshake carries no resume parameter."""

    async def run() -> tuple[str | None, dict[str, list[str]], dict[str, str]]:
        client = StickyClient("ws://127.0.0.1:1/ws", "jwt")
        client.resume_token = "old.mac"
        client._on_connected(_connected(**missing))
        return client.resume_token, parse_qs(urlsplit(client._handshake_url()).query), client._handshake_headers()

    token, query, headers = asyncio.run(run())
    assert token is None
    assert query == {}
    assert headers == {"Authorization": "Bearer jwt"}


def test_a_connected_frame_with_a_resume_token_is_kept_for_the_next_handshake() -> None:
    """The token of the last `connected` frame is sent in the X-Stickyws-Resume header (lastSeq in the
    query) on the next handshake; neither credential is in the URL, which ends up in access logs."""

    async def run() -> tuple[dict[str, list[str]], dict[str, str]]:
        client = StickyClient("ws://127.0.0.1:1/ws", "jwt")
        client._on_connected(_connected(resumeToken="sess.mac"))
        client.topics.add("news")
        client.positions["news"] = (4, "ep")
        return parse_qs(urlsplit(client._handshake_url()).query), client._handshake_headers()

    query, headers = asyncio.run(run())
    assert query == {"lastSeq": ["0"], "since": ['{"news":[4,"ep"]}']}
    assert headers == {"Authorization": "Bearer jwt", "X-Stickyws-Resume": "sess.mac"}
