"""A resuming client asks for the replies it missed (lastSeq) and gets each of them exactly once more."""

from __future__ import annotations

import io

from stickyws.client.backoff import Backoff
from stickyws.client.connection import Event, StickyClient
from stickyws.localproc import free_port
from stickyws.server.app import ServerConfig, build_core
from stickyws.server.ws_adapter import RunningServer
from tests.server.helpers import SECRET, eventually, fast, run, token


async def _start(redis_url: str, port: int, server_id: str) -> RunningServer:
    core = build_core(ServerConfig(fast(), SECRET, redis_url, server_id, None, False))
    core.metrics.out = io.StringIO()
    return await RunningServer(core, "127.0.0.1", port).start()


def test_resume_replays_replies_after_last_seq(redis_url: str) -> None:
    """Replies 2 and 3, lost in flight, come again after a resume on another server; nothing else does."""

    async def scenario() -> None:
        port = free_port()
        first = await _start(redis_url, port, "srv-a")
        seen: list[Event] = []
        client = StickyClient(
            f"ws://127.0.0.1:{port}/ws",
            token("replay-user"),
            backoff=Backoff(base_s=0.05, cap_s=0.1),
            on_event=seen.append,
        )
        client.start()
        try:
            await client.wait_connected(3)
            for n in range(3):
                client.send({"n": n})
            await client.wait_confirmed(3)
            await eventually(lambda: client.stats.messages == 3)
            assert client.last_seq == 3
            client.last_seq = 1  # as if replies 2 and 3 died with the connection
            await first.stop()
            second = await _start(redis_url, port, "srv-b")
            try:
                await eventually(lambda: client.stats.messages == 5, timeout_s=5)
                client.subscribe("after-the-replay")  # a round trip: anything more would come before its ack
                await client.wait_confirmed(3)
                seqs = [e.detail["seq"] for e in seen if e.kind == "message"]
                assert seqs == [1, 2, 3, 2, 3]
                assert (client.stats.resumed, client.server_id, client.last_seq) == (1, "srv-b", 3)
                assert client.stats.duplicate_messages == 0
            finally:
                await client.close()
                await second.stop()
        finally:
            await client.close()
            await first.stop()

    run(scenario(), timeout_s=20)
