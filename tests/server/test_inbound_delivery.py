"""``inbound_delivery``: exactly once (committed before the ack) or at most once (no per-message commit).

Each mode runs on one redis-server and on a local Redis Cluster (``registry_url``).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import aiohttp
import pytest

from stickyws.server.handler import HandlerContext
from tests.server.helpers import connect, fast, recv_json, run, send, server


async def _exchange(ws: aiohttp.ClientWebSocketResponse, ids: list[int]) -> list[dict[str, Any]]:
    """Send ``ids`` (data = id) and read frames until each is acknowledged; returns the frames in order."""
    for i in ids:
        await send(ws, i, i)
    frames: list[dict[str, Any]] = []
    acked = 0
    while acked < len(ids):
        frame = await recv_json(ws)
        frames.append(frame)
        acked += frame["type"] == "ack"
    return frames


@pytest.mark.parametrize("mode", ["exactly_once", "at_most_once"])
def test_resent_messages_after_a_reconnect(registry_url: str, mode: str) -> None:
    """Messages resent after a reconnect are acknowledged as duplicates and not handled again under
    exactly_once; under at_most_once they are handled and acknowledged again, replies carry no seq and
    nothing is committed, while a resend on the same connection is still a duplicate."""
    handled: Counter[int] = Counter()

    async def counting(ctx: HandlerContext, data: Any) -> list[Any]:
        handled[ctx.msg_id] += 1
        return [data]

    async def go() -> None:
        async with (
            server(fast(inbound_delivery=mode), redis_url=registry_url, server_id=f"io-{mode}", handler=counting) as rs,
            aiohttp.ClientSession() as http,
        ):
            user = f"inbound-{mode}"
            ws, first = await connect(http, rs, user)
            frames = await _exchange(ws, [1, 2, 3])
            if mode == "exactly_once":
                assert frames == [
                    {"type": "message", "seq": 1, "data": 1}, {"type": "ack", "id": 1},
                    {"type": "message", "seq": 2, "data": 2}, {"type": "ack", "id": 2},
                    {"type": "message", "seq": 3, "data": 3}, {"type": "ack", "id": 3},
                ]  # fmt: skip
            else:
                assert frames == [
                    {"type": "message", "data": 1}, {"type": "ack", "id": 1},
                    {"type": "message", "data": 2}, {"type": "ack", "id": 2},
                    {"type": "message", "data": 3}, {"type": "ack", "id": 3},
                ]  # fmt: skip
            assert await _exchange(ws, [3]) == [{"type": "ack", "id": 3, "duplicate": True}]
            await ws.close()

            ws2, second = await connect(http, rs, user, resume=first["resumeToken"])
            assert second["resumed"] is True
            again = await _exchange(ws2, [2, 3, 4])
            if mode == "exactly_once":
                assert (second["lastClientId"], second["lastServerSeq"]) == (3, 3)
                assert again == [
                    {"type": "ack", "id": 2, "duplicate": True}, {"type": "ack", "id": 3, "duplicate": True},
                    {"type": "message", "seq": 4, "data": 4}, {"type": "ack", "id": 4},
                ]  # fmt: skip
                assert handled == {1: 1, 2: 1, 3: 1, 4: 1}
            else:
                assert (second["lastClientId"], second["lastServerSeq"]) == (0, 0)
                assert again == [
                    {"type": "message", "data": 2}, {"type": "ack", "id": 2},
                    {"type": "message", "data": 3}, {"type": "ack", "id": 3},
                    {"type": "message", "data": 4}, {"type": "ack", "id": 4},
                ]  # fmt: skip
                assert handled == {1: 1, 2: 2, 3: 2, 4: 1}
            await ws2.close()

    run(go())
