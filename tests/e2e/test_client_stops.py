"""The client stops for good where retrying cannot help: a refused token, and a connection taken over."""

from __future__ import annotations

import asyncio

import pytest

from stickyws import protocol
from stickyws.client.connection import ClientStopped, StickyClient
from stickyws.twin.cluster import TwinCluster
from tests.e2e.support import client_session, run

pytestmark = [pytest.mark.haproxy, pytest.mark.redis]


def test_refused_token_stops_after_one_handshake(twin: TwinCluster) -> None:
    """A token signed with another key gets 403 once and the client stops instead of retrying."""

    async def scenario() -> StickyClient:
        async with client_session() as session:
            client = StickyClient(twin.url, twin.token("x")[:-4] + "AAAA", session=session)
            client.start()
            with pytest.raises(ClientStopped, match="403"):
                await client.wait_connected(10)
            await client.close()
            return client

    client = run(scenario(), timeout_s=20)
    assert client.stats.handshakes == 1
    assert client.stats.handshake_statuses == {403: 1}
    assert client.stats.connects == 0


def test_taken_over_connection_does_not_fight_back(registry_twin: TwinCluster) -> None:
    """A second connection of the same user, on another server, takes over; the first is closed with 4001
    and does not reconnect."""
    twin = registry_twin

    async def scenario() -> tuple[StickyClient, StickyClient]:
        async with client_session() as session:
            first_ended = asyncio.Event()
            first = StickyClient(
                twin.url,
                twin.token("twice"),
                session=session,
                on_event=lambda e: first_ended.set() if e.kind == "stopped" else None,
            )
            first.start()
            await first.wait_connected(10)
            second = StickyClient(twin.url, twin.token("twice"), session=session)
            second.start()
            await second.wait_connected(10)
            assert second.server_id != first.server_id  # round robin: the takeover crosses servers
            with pytest.raises(ClientStopped, match="4001"):
                await first.wait_for(lambda c: False, 10)
            async with asyncio.timeout(3):  # the first client's loop has ended: nothing can bring it back
                await first_ended.wait()
            assert second.connected
            await asyncio.gather(first.close(), second.close())
            return first, second

    first, second = run(scenario(), timeout_s=30)
    assert first.stats.close_codes == {protocol.CLOSE_TAKEN_OVER: 1}
    assert first.stats.handshakes == 1
    assert second.stats.connects == 1
    assert sum(second.stats.close_codes.values()) == 0
