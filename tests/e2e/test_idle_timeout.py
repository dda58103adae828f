"""Pings below the tunnel timeout keep idle connections; without pings they are cut at it."""

from __future__ import annotations

import asyncio
import threading

import pytest

from stickyws.client.connection import Event, StickyClient
from stickyws.settings import Settings, Severity
from stickyws.twin.cluster import TwinCluster
from tests.e2e.support import E2E_SETTINGS, TIME_SCALE, client_session, require_binaries, run

pytestmark = [pytest.mark.haproxy, pytest.mark.redis]

IDLE_S = 2
WATCH_S = 3 * IDLE_S + 0.6  # three full idle timeouts
PINGING = E2E_SETTINGS.with_overrides({"idle_timeout_s": IDLE_S, "ping_interval_s": 0.5})
SILENT = E2E_SETTINGS.with_overrides({"idle_timeout_s": IDLE_S, "ping_interval_s": "off"})


def _rule(settings: Settings) -> list[Severity]:
    return [f.severity for f in settings.validate() if f.rule == "ping-within-idle-timeout"]


def test_the_settings_rule_judges_both_configurations() -> None:
    """The ping rule accepts pings every idle/4, warns when pings are off and rejects pings above idle/2."""
    assert _rule(PINGING) == []
    assert _rule(SILENT) == [Severity.WARNING]
    assert _rule(PINGING.with_overrides({"ping_interval_s": 1.5})) == [Severity.ERROR]


def test_pings_keep_idle_connections_and_silence_is_cut_at_the_tunnel_timeout() -> None:
    """With pings every 0.5 s a silent client survives 3 idle timeouts on one connection; with pings off
    each connection is cut (1006) 2 s after its last frame."""
    require_binaries()
    twins = [
        TwinCluster(PINGING, servers=1, time_scale=TIME_SCALE),
        TwinCluster(SILENT, servers=1, time_scale=TIME_SCALE),
    ]
    starters = [threading.Thread(target=t.start) for t in twins]
    for t in starters:
        t.start()
    for t in starters:
        t.join(30)
    try:
        assert all(len(t.serving()) == 1 for t in twins)
        lives: dict[int, list[float]] = {0: [], 1: []}

        async def scenario() -> list[StickyClient]:
            async with client_session() as session:
                opened: dict[int, float] = {}

                def watch(index: int) -> object:
                    def on_event(event: Event) -> None:
                        if event.kind == "connected":
                            opened[index] = event.at
                        elif event.kind == "closed" and index in opened and event.detail["code"] is not None:
                            lives[index].append(event.at - opened.pop(index))

                    return on_event

                clients = [
                    StickyClient(t.url, t.token("idle"), settings=t.settings, session=session, on_event=watch(i))  # type: ignore[arg-type]
                    for i, t in enumerate(twins)
                ]
                for c in clients:
                    c.start()
                await asyncio.gather(*(c.wait_connected(10) for c in clients))
                await asyncio.sleep(WATCH_S)  # nobody sends anything
                await asyncio.gather(*(c.close() for c in clients))
                return clients

        pinging, silent = run(scenario(), timeout_s=30)
    finally:
        for t in twins:
            t.stop()
    assert pinging.stats.connects == 1
    assert sum(pinging.stats.close_codes.values()) == 0
    assert lives[0] == []
    assert silent.stats.close_codes[1006] >= 2
    cut = lives[1][: silent.stats.close_codes[1006]]
    # measured from the client seeing `connected`, a moment after HAProxy forwarded it (its timer start)
    assert all(IDLE_S - 0.05 <= life < IDLE_S + 0.5 for life in cut), cut
    lifetimes = ", ".join(f"{x:.2f}" for x in cut)
    print(f"idle timeout {IDLE_S} s: pinging client kept 1 connection {WATCH_S:.1f} s; silent one cut at {lifetimes} s")
