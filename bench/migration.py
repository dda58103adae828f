"""Scenario 7: a blue/green deployment moving every client off three blue servers, paced and not.

Three reference servers behind the twin's HAProxy (:class:`stickyws.twin.cluster.TwinCluster`) hold
N reference clients (one Python process), each sending a numbered message every
:data:`bench.storm.SEND_EVERY_S`; then the twin deploys ``blue_green`` as ECS does
(:func:`stickyws.twin.blue_green.deploy`: green scaled up, production shifted, the hook, the bake,
cleanup). Three variants, each on a fresh twin, alternated in one run:

* ``paced``: the migration hook (:mod:`stickyws.twin.migration`, the same decisions as the Lambda)
  tells blue's servers to drain, fewest connections first, so that the fleet's reconnect rate stays
  within ``migration_pace_per_s``;
* ``unpaced``: the same hook with an unbounded pace: every blue server told at once (what a hook
  without a plan does);
* ``no_hook``: what ECS does alone: cleanup deregisters every blue server together and cuts what is
  left at the deregistration delay.

Measured per variant: the time from the end of the production shift until every client is on green
and resumed, the peak handshake rate (client-side ``connected`` times, 1 s sliding window), clients
that moved more than once, and messages lost (:func:`bench.storm.losses`).
"""

from __future__ import annotations

import asyncio
import functools
import random
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from bench import report
from bench.storm import SEND_EVERY_S, STORM_OVERRIDES, connect_clients, losses, on_twin, stream
from stickyws.client.connection import peak_rate_per_s
from stickyws.settings import Settings
from stickyws.twin.cluster import TwinCluster

#: The migration's settings: the storm's (short but inside the AWS ranges) and a blue/green deployment.
#: Each blue server holds about a third of the clients and spreads them over its 8 s drain window, 125
#: reconnects/s for 1,000 clients: under the 150/s pace one server drains at a time.
MIGRATION_OVERRIDES: dict[str, Any] = {
    **STORM_OVERRIDES,
    "deployment_strategy": "blue_green",
    "migration_pace_per_s": 150,
    "migration_window_s": 120,
}
#: The three variants, in the order they run.
VARIANTS = ("paced", "unpaced", "no_hook")
#: The pace of ``unpaced``: far above any rate three servers can cause.
UNBOUNDED_PACE_PER_S = 1e9
#: The peak may exceed the pace by this share (the target's margin, :data:`bench.report.MIGRATION_PACE_MARGIN`).
PACE_MARGIN = report.MIGRATION_PACE_MARGIN
#: Seconds of bake after the hook (the twin's bake is not what is measured here).
BAKE_S = 1.0
#: Bound on one variant.
VARIANT_TIMEOUT_S = 240.0


def _hook(variant: str, settings: Settings) -> Any:
    """The twin hook of ``variant`` (``None`` for ``no_hook``)."""
    if variant == "no_hook":
        return None
    from stickyws.twin.migration import paced_hook

    pace = float(settings["migration_pace_per_s"]) if variant == "paced" else UNBOUNDED_PACE_PER_S
    return paced_hook(pace_per_s=pace)


async def _migrate(twin: TwinCluster, settings: Settings, variant: str, clients_n: int,
                   say: Callable[[str], None]) -> dict[str, Any]:  # fmt: skip
    rng = random.Random(7)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar()) as session:
        clients, watches = await connect_clients(twin, settings, session, clients_n, "migration-", rng, say)
        stop = asyncio.Event()
        senders = [asyncio.create_task(stream(c, stop, rng)) for c in clients]
        await asyncio.sleep(SEND_EVERY_S)
        blue = set(twin.serving())
        started = time.monotonic()
        report = await asyncio.to_thread(twin.deploy, "blue_green", hook=_hook(variant, settings), bake_s=BAKE_S)
        deploy_s = time.monotonic() - started
        await asyncio.gather(*(c.wait_for(lambda c: c.connected and c.server_id not in blue, 60) for c in clients))
        stop.set()
        await asyncio.gather(*senders)
        await asyncio.gather(*(c.wait_confirmed(30) for c in clients))
        moves = [sum(1 for t in c.stats.reconnect_times if t >= started) for c in clients]
        times = [t for c in clients for t in c.stats.reconnect_times if t >= started]
        back_at = [max(c.stats.reconnect_times) for c in clients if c.stats.reconnect_times]
        lost = losses(twin, clients, watches, "migration-")
        result = {
            "variant": variant,
            "clients": clients_n,
            "pace_per_s": float(settings["migration_pace_per_s"]) if variant == "paced" else None,
            "deploy_s": deploy_s,
            "all_moved_s": (max(back_at) - started) if len(back_at) == clients_n else float("inf"),
            "peak_handshakes_per_s": peak_rate_per_s(times),
            "moved": sum(1 for m in moves if m >= 1),
            "moved_more_than_once": sum(1 for m in moves if m > 1),
            "cut": getattr(report, "cut", 0),
            "abrupt_1006": sum(c.stats.close_codes[1006] for c in clients),
            "sent": sum(c.outbox.sent_count for c in clients),
            **lost,
        }
        await asyncio.gather(*(c.close() for c in clients))
        return result


def run_migration(base: Settings, clients_n: int, server_core: int | None, client_core: int | None,
                  say: Callable[[str], None]) -> list[dict[str, Any]]:  # fmt: skip
    """Run every variant on a fresh twin (its processes on ``server_core``, the clients on ``client_core``)."""
    settings = base.with_overrides(MIGRATION_OVERRIDES)
    results = []
    for variant in VARIANTS:
        result = on_twin(settings, server_core, client_core, VARIANT_TIMEOUT_S,
                         functools.partial(_migrate, settings=settings, variant=variant, clients_n=clients_n,
                                           say=say))  # fmt: skip
        say(f"  migration {variant}: {result['moved']} of {clients_n} clients moved "
            f"({result['moved_more_than_once']} more than once) in {result['all_moved_s']:.1f} s, peak "
            f"{result['peak_handshakes_per_s']:.0f} handshakes/s, {result['cut']} cut, "
            f"{result['lost']} lost")  # fmt: skip
        results.append(result)
    return results


def _cell(record: dict[str, Any]) -> str:
    return (
        f"{record['all_moved_s']:.1f} s, peak {record['peak_handshakes_per_s']:.0f}/s, {record['cut']} cut, "
        f"{record['lost']} lost, {record['moved_more_than_once']} moved twice"
    )


def rows(records: list[dict[str, Any]] | None) -> list[report.Row]:
    """The migration's row: the paced hook against ECS alone (no hook), judged by the pace and 0 lost."""
    if not records:
        return []
    by = {r["variant"]: r for r in records}
    paced, alone = by.get("paced"), by.get("no_hook")
    if paced is None or alone is None:
        return []
    t = report.TARGETS["migration"]
    bound = paced["pace_per_s"] * (1 + PACE_MARGIN)
    clean = paced["lost"] == 0 and paced["moved_more_than_once"] == 0
    unpaced = by.get("unpaced")
    note = f"peak bound {bound:g}/s (pace {paced['pace_per_s']:g}/s + {PACE_MARGIN:.0%})"
    if unpaced is not None:
        note += f"; every blue server told at once: {_cell(unpaced)}"
    return [
        report.Row(
            f"7. blue/green deploy: {paced['clients']:,} clients off 3 blue servers (paced hook / ECS alone)",
            _cell(paced), _cell(alone), paced["peak_handshakes_per_s"] / bound if clean else float("inf"),
            t.bound, t.at_least, t.text, note=note,
            short="migration: peak handshakes/s / pace bound", judged_by="migration",
        )
    ]  # fmt: skip


def method_line() -> str:
    """The scenario's line under *Method* on BENCHMARKS.md."""
    return (
        "- Scenario 7 (`bench/migration.py`): 3 reference servers behind the twin hold the clients (each sending "
        f"a numbered message every {SEND_EVERY_S:g} s); the twin deploys `blue_green` as ECS does, once with the "
        "paced migration hook, once with every blue server told at once, once with no hook (cleanup cuts blue), "
        "each on a fresh twin. Peak = client-side handshakes in a 1 s window. Settings: "
        + ", ".join(f"`{k}={v}`" for k, v in MIGRATION_OVERRIDES.items())
        + "."
    )
