"""Moving blue's open WebSockets to green at a fleet-wide pace: the migration hook's plan and answers.

Under an ECS blue/green, linear or canary deployment the listener weights move new handshakes only:
every socket open when the shift starts stays on blue until ECS stops all blue tasks together at
cleanup. The migration hook runs at ``POST_PRODUCTION_TRAFFIC_SHIFT`` (production already goes to
green) and tells blue's servers to drain one after another, through the same drain notice the
drain notifier writes (``ws:drain:<serverId>``, docs/drain-contract.md), so their clients reconnect
to green at a pace the fleet and the registry can take instead of all at once at cleanup.

Pure: no I/O. The clock is a parameter (``now_s``, seconds since the epoch: the state crosses
Lambda invocations, so it is wall-clock time) or injectable (:class:`Migration`).

**The pace model.** A server that receives its notice at ``t`` spreads its ``c`` clients'
reconnects evenly over its drain window ``d`` (``drain_window_s``; the reference server cuts the
window into one slot per connection): ``c / d`` reconnects per second during ``[t, t + d)``. The
plan gives every blue server a moment for its notice such that the sum of those rates stays at or
under ``pace_per_s`` at every instant (:func:`plan`). Servers go **fewest connections first** (ties
by server id): the first notices move few clients, so a problem with green shows while little has
moved, and the servers that hold most go last, when nothing else is reconnecting. A server whose
own rate ``c / d`` is above the pace can never fit: it is planned alone, once every earlier
server's window has ended, and flagged ``over_pace``.

**The answer on each call** (:func:`decide`; ECS calls the hook again after ``callBackDelay``
seconds while it answers ``IN_PROGRESS``):

* ``SUCCEEDED`` as soon as blue holds at most ``done_connections`` connections (its heartbeats'
  sum); the servers not told yet get their notice in that call (a handful of clients, far under
  any pace);
* ``SUCCEEDED`` at the end of the window (``window_s`` from the first call) with a note of the
  connections still on blue: cleanup's stop sequence ends them (the drain notifier's notice, then
  the cut at the deregistration delay). Not ``FAILED``: that would roll the deployment back,
  shifting production to blue again and stopping green, whose clients (every new handshake since
  the shift and every client already moved) would then be moved or cut in turn; the few left on
  blue are the smaller loss;
* ``IN_PROGRESS`` otherwise, with the notices now due and a call-back delay that reaches the next
  planned notice (at most ``max_callback_s``);
* with the registry unreachable (``blue`` is ``None``): ``IN_PROGRESS`` until the window ends, then
  ``SUCCEEDED`` noting that blue's connections are unknown.

The plan is made again on every call from the current heartbeats, around the notices already sent
(each still reconnecting at the rate recorded when it was sent), so a late call never sends two
planned notices together that the pace keeps apart. What crosses calls is :class:`MigrationState`,
carried in the hook's ``hookDetails`` as small JSON (:meth:`MigrationState.to_details`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

HookStatus = Literal["SUCCEEDED", "FAILED", "IN_PROGRESS"]

#: The key of ``hookDetails`` under which the state travels (other keys are left as they are).
DETAILS_KEY: Final = "stickywsMigration"
#: Version of the state's JSON shape.
STATE_VERSION: Final = 1
#: Slack for floating-point sums of rates (reconnects per second).
_EPS: Final = 1e-9


@dataclass(frozen=True)
class MigrationConfig:
    """What the migration is allowed to do.

    :param pace_per_s: fleet-wide reconnects per second the migration may cause (> 0).
    :param window_s: seconds from the hook's first call after which it answers ``SUCCEEDED``
        whatever is left on blue (> 0).
    :param drain_window_s: the servers' drain window, seconds over which each server spreads its
        reconnect instructions (> 0; the ``drain_window_s`` setting).
    :param done_connections: blue counts as empty at or under this many connections (>= 0).
    :param max_callback_s: longest ``callBackDelay`` answered, seconds (>= 1; ECS's default 30).
    """

    pace_per_s: float
    window_s: float
    drain_window_s: float
    done_connections: int = 0
    max_callback_s: int = 30

    def __post_init__(self) -> None:
        problems = []
        if not self.pace_per_s > 0:
            problems.append(f"pace_per_s={self.pace_per_s} must be > 0 reconnects per second")
        if not self.window_s > 0:
            problems.append(f"window_s={self.window_s} must be > 0 seconds")
        if not self.drain_window_s > 0:
            problems.append(f"drain_window_s={self.drain_window_s} must be > 0 seconds")
        if self.done_connections < 0:
            problems.append(f"done_connections={self.done_connections} must be >= 0")
        if self.max_callback_s < 1:
            problems.append(f"max_callback_s={self.max_callback_s} must be >= 1 second")
        if problems:
            raise ValueError("invalid migration settings: " + "; ".join(problems))


@dataclass(frozen=True)
class Sent:
    """A drain notice already written: to ``server_id`` at ``at_s`` (epoch seconds), which then held ``connections``."""

    server_id: str
    at_s: float
    connections: int


@dataclass(frozen=True)
class MigrationState:
    """What one call hands the next: when the migration started and which notices went out."""

    started_at_s: float
    sent: tuple[Sent, ...] = ()

    def with_sent(self, sent: Iterable[Sent]) -> MigrationState:
        """This state with ``sent`` recorded too."""
        return MigrationState(self.started_at_s, (*self.sent, *sent))

    def to_details(self) -> dict[str, Any]:
        """The JSON-able value stored under :data:`DETAILS_KEY` (milliseconds, compact lists)."""
        return {
            "v": STATE_VERSION,
            "startedAtMs": round(self.started_at_s * 1000),
            "sent": [[s.server_id, round(s.at_s * 1000), s.connections] for s in self.sent],
        }

    @classmethod
    def from_details(cls, details: Any) -> MigrationState | None:
        """The state in a ``hookDetails`` object, or ``None`` when it holds none (the first call).

        Raises ``ValueError`` for a state that is there but malformed.
        """
        if not isinstance(details, Mapping) or details.get(DETAILS_KEY) is None:
            return None
        body = details[DETAILS_KEY]
        try:
            if body["v"] != STATE_VERSION:
                raise ValueError(f"state version {body['v']!r}, expected {STATE_VERSION}")
            sent = tuple(Sent(str(sid), int(at_ms) / 1000, int(n)) for sid, at_ms, n in body["sent"])
            return cls(started_at_s=int(body["startedAtMs"]) / 1000, sent=sent)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed {DETAILS_KEY} in hookDetails: {exc}") from None


@dataclass(frozen=True)
class Slot:
    """A planned notice: ``server_id`` (holding ``connections``) is told to drain at ``at_s``.

    ``over_pace``: the server's own rate is above the pace (it is planned alone).
    """

    server_id: str
    at_s: float
    connections: int
    over_pace: bool = False


@dataclass(frozen=True)
class Decision:
    """One call's outcome: the answer for ECS, the notices to write now, and the state for the next call."""

    status: HookStatus
    notices: tuple[Slot, ...]
    state: MigrationState
    note: str
    callback_delay_s: int | None = None
    blue_connections: int | None = None
    plan: tuple[Slot, ...] = ()

    def hook_response(self, details: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The Lambda's return value: ``hookStatus``, ``callBackDelay`` (IN_PROGRESS only), ``hookDetails``.

        ``details`` (the incoming ``hookDetails``) keeps its other keys; the state replaces :data:`DETAILS_KEY`.
        """
        hook_details = dict(details or {})
        hook_details[DETAILS_KEY] = self.state.to_details()
        response: dict[str, Any] = {"hookStatus": self.status, "hookDetails": hook_details}
        if self.status == "IN_PROGRESS" and self.callback_delay_s is not None:
            response["callBackDelay"] = self.callback_delay_s
        return response


def rate_per_s(connections: int, drain_window_s: float) -> float:
    """Reconnects per second a draining server with ``connections`` causes over its window."""
    return max(connections, 0) / drain_window_s


def plan(
    servers: Mapping[str, int],
    *,
    sent: Iterable[Sent] = (),
    now_s: float,
    pace_per_s: float,
    drain_window_s: float,
) -> tuple[Slot, ...]:
    """When each of ``servers`` (server id -> connections, none of them sent yet) gets its notice.

    Fewest connections first (ties by id), each at the earliest moment, no earlier than ``now_s``
    nor than the slot before it, at which its rate added to those of every notice in flight (the
    ``sent`` ones and the slots before it) stays at or under ``pace_per_s`` for its whole drain
    window. A server whose rate alone is above the pace goes once nothing else is in flight.
    """
    intervals: list[tuple[float, float, float]] = [
        (s.at_s, s.at_s + drain_window_s, rate_per_s(s.connections, drain_window_s))
        for s in sent
        if s.at_s + drain_window_s > now_s
    ]
    slots: list[Slot] = []
    earliest = now_s
    for server_id, connections in sorted(servers.items(), key=lambda item: (item[1], item[0])):
        rate = rate_per_s(connections, drain_window_s)
        at_s, over = _first_fit(intervals, earliest, rate, pace_per_s, drain_window_s)
        slots.append(Slot(server_id, at_s, connections, over))
        intervals.append((at_s, at_s + drain_window_s, rate))
        earliest = at_s
    return tuple(slots)


def _load(intervals: list[tuple[float, float, float]], at_s: float) -> float:
    """Sum of the rates in flight at ``at_s``."""
    return sum(rate for start, end, rate in intervals if start <= at_s < end)


def _first_fit(
    intervals: list[tuple[float, float, float]], earliest: float, rate: float, pace: float, window: float
) -> tuple[float, bool]:
    """The earliest start >= ``earliest`` at which ``rate`` fits under ``pace`` for ``window`` seconds.

    Returns that start and whether the rate alone is over the pace (then: after everything in flight).
    """
    candidates = sorted({earliest, *(end for _, end, _ in intervals if end > earliest)})
    if rate <= pace + _EPS:
        for t in candidates:
            checkpoints = [t, *(start for start, _, _ in intervals if t < start < t + window)]
            if all(_load(intervals, x) + rate <= pace + _EPS for x in checkpoints):
                return t, False
    # Too fast for the pace on its own: alone, after everything in flight.
    return candidates[-1], rate > pace + _EPS


def decide(
    config: MigrationConfig,
    state: MigrationState | None,
    blue: Mapping[str, int] | None,
    *,
    now_s: float,
) -> Decision:
    """The hook's answer at ``now_s`` (epoch seconds); see the module docstring.

    ``state`` is the previous call's (``None`` on the first call); ``blue`` maps each blue server
    id to the connections its heartbeat reports (``None``: the registry could not be read). The
    returned state records the returned notices as sent at ``now_s``; a caller that could not write
    some of them records only those it wrote (:meth:`MigrationState.with_sent`).
    """
    if state is None:
        state = MigrationState(started_at_s=now_s)
    ends_at_s = state.started_at_s + config.window_s
    window_over = now_s >= ends_at_s

    def delay_until(moment_s: float) -> int:
        target = min(moment_s, now_s + config.max_callback_s, ends_at_s)
        return max(1, math.ceil(target - now_s))

    if blue is None:
        if window_over:
            return Decision(
                "SUCCEEDED",
                (),
                state,
                f"the registry could not be read and the migration window of {config.window_s:g} s has ended: "
                "blue's connections are unknown; cleanup's stop sequence ends whatever is left",
            )
        return Decision(
            "IN_PROGRESS",
            (),
            state,
            "the registry could not be read: no notice written, asking again",
            callback_delay_s=delay_until(math.inf),
        )

    left = sum(max(n, 0) for n in blue.values())
    told = {s.server_id for s in state.sent}
    untold = {sid: n for sid, n in blue.items() if sid not in told}
    if left <= config.done_connections:
        notices = tuple(Slot(sid, now_s, n) for sid, n in sorted(untold.items(), key=lambda i: (i[1], i[0])))
        return Decision(
            "SUCCEEDED",
            notices,
            state.with_sent(Sent(s.server_id, now_s, s.connections) for s in notices),
            f"blue holds {left} connection(s), at or under {config.done_connections}: migration done",
            blue_connections=left,
        )
    if window_over:
        return Decision(
            "SUCCEEDED",
            (),
            state,
            f"the migration window of {config.window_s:g} s has ended with {left} connection(s) on "
            f"{sum(1 for n in blue.values() if n > 0)} blue server(s), {len(untold)} of them never told to drain: "
            "cleanup's stop sequence ends them",
            blue_connections=left,
        )
    slots = plan(
        untold, sent=state.sent, now_s=now_s, pace_per_s=config.pace_per_s, drain_window_s=config.drain_window_s
    )
    due = tuple(s for s in slots if s.at_s <= now_s + _EPS)
    later = [s.at_s for s in slots if s.at_s > now_s + _EPS]
    return Decision(
        "IN_PROGRESS",
        due,
        state.with_sent(Sent(s.server_id, now_s, s.connections) for s in due),
        f"blue holds {left} connection(s); {len(due)} notice(s) due now, {len(later)} planned later",
        callback_delay_s=delay_until(min(later, default=math.inf)),
        blue_connections=left,
        plan=slots,
    )


class Migration:
    """:func:`decide` with its configuration and an injectable wall clock (epoch seconds; default :func:`time.time`)."""

    def __init__(self, config: MigrationConfig, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self._clock = clock

    def now(self) -> float:
        """The clock's reading, epoch seconds."""
        return self._clock()

    def step(self, details: Mapping[str, Any] | None, blue: Mapping[str, int] | None) -> Decision:
        """The decision for a call whose ``hookDetails`` are ``details``; raises ``ValueError`` on a malformed state."""
        return decide(self.config, MigrationState.from_details(details), blue, now_s=self._clock())
