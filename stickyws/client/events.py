"""What the reference client reports: its events (:class:`Event`) and its counters (:class:`ClientStats`)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

#: Event kinds, in the order a connection produces them.
EVENT_KINDS = (
    "connecting",
    "connected",
    "ack",
    "message",
    "publication",
    "unrecoverable",
    "gap",
    "error",
    "reconnect_requested",
    "closed",
    "rejected",
    "backoff",
    "stopped",
)


@dataclass(frozen=True)
class Event:
    """Something the client saw: ``kind`` is one of :data:`EVENT_KINDS`; ``at`` is ``time.monotonic()``."""

    kind: str
    detail: dict[str, Any]
    at: float


@dataclass
class ClientStats:
    """Counters a test or an operator reads after (or during) a run."""

    handshakes: int = 0
    connects: int = 0
    #: ``time.monotonic()`` of every ``connected`` after the first: the reconnect timeline.
    reconnect_times: list[float] = field(default_factory=list)
    resumed: int = 0
    not_resumed_reconnects: int = 0
    close_codes: Counter[int] = field(default_factory=Counter)
    handshake_statuses: Counter[int] = field(default_factory=Counter)
    reconnect_frames: int = 0
    #: ``reconnect`` frames with reason ``send_on`` (a server of the revision the client avoids sent it on).
    sends_on: int = 0
    connect_errors: int = 0
    #: Server id of every connection, in order.
    servers: list[str] = field(default_factory=list)
    session_ids: set[str] = field(default_factory=set)
    #: ``message`` frames received (their payloads go to the events, not here: a client may run for days).
    messages: int = 0
    #: ``message`` frames dropped because their seq had been seen already (a replay overlap).
    duplicate_messages: int = 0
    #: ``publication`` frames received, and those dropped as already seen (offset at or below the position).
    publications: int = 0
    duplicate_publications: int = 0
    #: ``unrecoverable`` (topic history gone) and ``gap`` (session messages gone) frames received.
    unrecoverable: int = 0
    gaps: int = 0
    #: Frames that were not valid ``stickyws.v1`` server frames (ignored).
    bad_frames: int = 0
    #: Upgrades answered by a server that does not speak ``stickyws.v1`` (no subprotocol, no ``connected``).
    protocol_failures: int = 0
    #: Longest time between losing a connection and the next ``connected``.
    max_outage_s: float = 0.0


def peak_rate_per_s(times: list[float], window_s: float = 1.0) -> float:
    """Largest number of ``times`` (seconds, e.g. :attr:`ClientStats.reconnect_times`) in any sliding
    ``window_s`` window, per second: the peak reconnect rate a fleet of clients put on the servers."""
    ordered = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(ordered):
        while t - ordered[lo] > window_s:
            lo += 1
        best = max(best, hi - lo + 1)
    return best / window_s
