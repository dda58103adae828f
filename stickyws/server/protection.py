"""Task scale-in protection: which tasks hold it, and when each one protects, renews or releases.

What ECS does (Amazon ECS developer guide: "Protect your Amazon ECS tasks from being terminated by
scale-in events", "Amazon ECS task scale-in protection endpoint"; API reference UpdateTaskProtection):

* A protected task is not stopped by a scale-in of service auto scaling, nor by a deployment; ECS
  picks among the unprotected tasks, and a deployment waits for protected tasks until their
  protection is released or expires.
* Protection lasts ``ExpiresInMinutes`` (1 to 2880; 120 when not given) and each call that protects a
  task already protected starts the period again: a task stays protected by renewing it.

This module is the decision, pure and with an injectable clock; :mod:`stickyws.server.task_protection`
makes the calls to the ECS agent.

The policy (:class:`ProtectionPolicy`), one decision per heartbeat:

* The fleet is every live, non-draining server's heartbeat (its ``connections``). The
  ``scale_in_unprotected_percent`` share of it with the fewest connections (at least one server,
  ties broken by server id) stays unprotected: that is what a scale-in may stop. Every other server
  with at least one connection protects itself.
* A server drops its protection (``RELEASE``) when it falls into that share, when it has no
  connection, when it drains, at shutdown, and when a live server runs another revision (a deployment is
  replacing the fleet, and protection would hold it up).
* Protection is renewed once half of ``scale_in_protection_expires_min`` has passed since the last
  successful protect, well before it runs out.
* Bounded release: when the fleet cannot be read, nothing is renewed, so protection lapses at the latest
  ``scale_in_protection_expires_min`` after the last renewal. A server that dies releases nothing,
  and its task is gone anyway.
* A change of verdict (protect to release or back) must be seen on two heartbeats in a row before it
  is acted on, so connection counts that cross each other for one beat do not make calls; draining and
  shutdown release at once.
"""

from __future__ import annotations

import enum
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from stickyws.registry.interfaces import heartbeat_is_live

#: Share of the protection period after which a protected server renews it.
RENEW_SHARE = 0.5
#: Heartbeats in a row that must agree on a new verdict before it is acted on.
CONFIRM_BEATS = 2


class Action(enum.Enum):
    """What to tell the ECS agent now."""

    NONE = "none"
    PROTECT = "protect"
    RELEASE = "release"


@dataclass(frozen=True)
class Decision:
    """One decision: the action, why, and for ``PROTECT`` the ``ExpiresInMinutes`` to ask for."""

    action: Action
    reason: str
    expires_in_min: int = 0


@dataclass(frozen=True)
class FleetEntry:
    """What one live server's heartbeat says: its connections and revision (``""`` when it names none)."""

    connections: int
    revision: str = ""


def read_fleet(heartbeats: Mapping[str, str]) -> dict[str, FleetEntry]:
    """The live, non-draining servers among heartbeat values (``{server id: body}``); unreadable ones are left out."""
    fleet: dict[str, FleetEntry] = {}
    for server_id, body in heartbeats.items():
        if not heartbeat_is_live(body):
            continue
        try:
            parsed = json.loads(body)
            connections = int(parsed["connections"])
            revision = str(parsed.get("revision") or "")
        except (ValueError, TypeError, KeyError, AttributeError):
            continue
        fleet[server_id] = FleetEntry(max(connections, 0), revision)
    return fleet


def unprotected_share(connections: Mapping[str, int], percent: int) -> frozenset[str]:
    """The servers left unprotected: the ``percent`` share with the fewest connections, at least one.

    Rounded down (4 servers at 25 %: one; 3 servers at 25 %: one); ties go by server id.
    """
    if not connections:
        return frozenset()
    count = max(1, len(connections) * percent // 100)
    ordered = sorted(connections.items(), key=lambda item: (item[1], item[0]))
    return frozenset(server_id for server_id, _ in ordered[:count])


class ProtectionPolicy:
    """The decision for one server (see the module docstring); ``clock`` is monotonic seconds.

    Call :meth:`decide` on each heartbeat, make the call it asks for, then :meth:`record` its outcome.
    The policy starts unprotected, as ECS starts every task.
    """

    def __init__(
        self,
        *,
        server_id: str,
        expires_min: int,
        unprotected_percent: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.server_id = server_id
        self.expires_min = expires_min
        self.unprotected_percent = unprotected_percent
        self._clock = clock
        #: Whether the agent last confirmed protection (and when, monotonic seconds).
        self.protected = False
        self.protected_at: float | None = None
        #: Set by draining or shutdown: never protect again.
        self.final = False
        self._pending: tuple[Action, int] | None = None

    @property
    def renew_after_s(self) -> float:
        """Seconds after a successful protect at which it is renewed."""
        return self.expires_min * 60 * RENEW_SHARE

    def verdict(self, own_connections: int, fleet: Mapping[str, FleetEntry]) -> tuple[Action, str]:
        """Whether this server should hold protection now (the fleet counts it with ``own_connections``)."""
        if own_connections <= 0:
            return Action.RELEASE, "no connection to protect"
        own = fleet.get(self.server_id)
        own_revision = own.revision if own is not None else ""
        other = sorted({e.revision for sid, e in fleet.items() if sid != self.server_id and e.revision})
        if own_revision and any(r != own_revision for r in other):
            return (
                Action.RELEASE,
                f"a live server runs another revision ({', '.join(other)}): a deployment is under way",
            )
        counts = {sid: e.connections for sid, e in fleet.items()}
        counts[self.server_id] = own_connections
        spared = unprotected_share(counts, self.unprotected_percent)
        if self.server_id in spared:
            return Action.RELEASE, (
                f"among the {len(spared)} of {len(counts)} server(s) with the fewest connections "
                f"({own_connections}): left for scale-in"
            )
        return (
            Action.PROTECT,
            f"{own_connections} connection(s), more than the {len(spared)} server(s) left for scale-in",
        )

    def decide(
        self, own_connections: int, fleet: Mapping[str, FleetEntry] | None, *, draining: bool = False
    ) -> Decision:
        """The action for this heartbeat. ``fleet`` is ``None`` when the registry could not be read."""
        if draining or self.final:
            self.final = True
            if self.protected:
                return Decision(Action.RELEASE, "draining: the task is going away")
            return Decision(Action.NONE, "draining")
        if fleet is None:
            self._pending = None
            return Decision(Action.NONE, "fleet unknown: protection is not renewed and lapses on its own")
        want, reason = self.verdict(own_connections, fleet)
        now = self._clock()
        if want is Action.PROTECT and self.protected:
            self._pending = None
            assert self.protected_at is not None
            if now - self.protected_at >= self.renew_after_s:
                return Decision(Action.PROTECT, f"renewal: {reason}", self.expires_min)
            return Decision(Action.NONE, f"protected: {reason}")
        if (want is Action.RELEASE) == (not self.protected):
            self._pending = None
            return Decision(Action.NONE, f"unprotected: {reason}")
        # A change of verdict: act once it was seen on CONFIRM_BEATS beats in a row.
        seen = self._pending[1] + 1 if self._pending is not None and self._pending[0] is want else 1
        if seen < CONFIRM_BEATS:
            self._pending = (want, seen)
            return Decision(Action.NONE, f"{want.value} pending ({seen}/{CONFIRM_BEATS}): {reason}")
        self._pending = None
        return Decision(want, reason, self.expires_min if want is Action.PROTECT else 0)

    def shutdown(self) -> Decision:
        """The decision at shutdown: release if protected; never protect again."""
        self.final = True
        if self.protected:
            return Decision(Action.RELEASE, "shutdown")
        return Decision(Action.NONE, "shutdown")

    def record(self, decision: Decision, ok: bool) -> None:
        """The agent's answer to ``decision``'s call: ``ok`` when it took it (a failed call changes nothing)."""
        if decision.action is Action.NONE:
            return
        if not ok:
            if not self.final and (decision.action is Action.PROTECT) != self.protected:
                self._pending = (decision.action, CONFIRM_BEATS - 1)  # confirmed already: retry on the next beat
            return
        if decision.action is Action.PROTECT:
            self.protected, self.protected_at = True, self._clock()
        else:
            self.protected, self.protected_at = False, None
