"""Over-limit handshakes get 503 + Retry-After; the client backs off and gets in later."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from stickyws.client.backoff import Backoff
from stickyws.client.connection import Event, StickyClient
from stickyws.twin.cluster import TwinCluster
from tests.e2e.support import E2E_SETTINGS, TIME_SCALE, client_session, require_binaries, run

pytestmark = [pytest.mark.haproxy, pytest.mark.redis]

LIMIT = 4
SETTINGS = E2E_SETTINGS.with_overrides({"max_connections": LIMIT, "target_connections_per_task": LIMIT - 1})
HOLD_S = 2.0


def test_over_limit_handshake_gets_503_retry_after_and_succeeds_when_capacity_returns() -> None:
    """With 4 connections the 5th handshake gets 503 + Retry-After: 1, retries no sooner than that,
    and connects once one client leaves."""
    require_binaries()
    with TwinCluster(SETTINGS, servers=1, time_scale=TIME_SCALE) as twin:

        async def scenario() -> tuple[StickyClient, list[Event], float]:
            async with client_session() as session:
                holders = [StickyClient(twin.url, twin.token(f"hold-{i}"), session=session) for i in range(LIMIT)]
                for c in holders:
                    c.start()
                await asyncio.gather(*(c.wait_connected(10) for c in holders))
                events: list[Event] = []
                late = StickyClient(
                    twin.url, twin.token("late"), settings=SETTINGS, session=session, on_event=events.append
                )
                late.start()
                await asyncio.sleep(HOLD_S)
                assert not late.connected
                freed_at = time.monotonic()
                await holders[0].close()
                await late.wait_connected(10)
                await asyncio.gather(late.close(), *(c.close() for c in holders[1:]))
                return late, events, freed_at

        late, events, freed_at = run(scenario(), timeout_s=30)
        deadline = time.monotonic() + 3.0  # HAProxy notices the closes within milliseconds
        while twin.connections(twin.serving()[0]) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert twin.connections(twin.serving()[0]) == 0
    rejected = [e for e in events if e.kind == "rejected"]
    tries = [e.at for e in events if e.kind == "connecting"]
    connected = [e for e in events if e.kind == "connected"]
    assert {e.detail["status"] for e in rejected} == {503}
    assert {e.detail["retry_after_s"] for e in rejected} == {1.0}
    assert 2 <= len(rejected) <= HOLD_S / 1.0 + 1
    assert all(b - a >= 1.0 for a, b in itertools.pairwise(tries))  # Retry-After honoured
    assert len(connected) == 1
    assert connected[0].at > freed_at
    assert late.stats.handshake_statuses == {503: len(rejected)}
    waited_s = connected[0].at - freed_at
    assert waited_s <= Backoff.from_settings(SETTINGS).bound_s(len(rejected), hint_s=1.0) + 0.3
    print(f"connection limit {LIMIT}: {len(rejected)} x 503 + Retry-After 1, in {waited_s:.2f} s after a slot freed")
