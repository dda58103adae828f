"""A scale-in on the twin: ECS's choice of the tasks to stop, then the stop sequence of each.

How ECS chooses (ECS developer guide): tasks with scale-in protection are not stopped by a scale-in
("Protect your Amazon ECS tasks from being terminated by scale-in events"); among the others, a
service's tasks are spread over Availability Zones (the default placement strategy of a service is
``spread`` on ``attribute:ecs.availability-zone``) and a scale-in picks tasks that keep the zones
balanced, at random within a zone ("Use strategies to define Amazon ECS task placement"). That page
describes the EC2 launch type; that Fargate services choose the same way is an inference.

The twin's model of it (:func:`ecs_choice`): the twin places server ``s<i>`` in zone
``TWIN_AZS[(i - 1) % 2]`` (the reference stack's VPC spans two zones). Each pick takes, among the
unprotected servers not picked yet, one in the zone that holds the most servers still running
(protected ones count for the balance), ties and the server within the zone at random (``rng``).
When fewer servers than asked for are unprotected, the rest of the scale-in waits (ECS waits until
protection is released or expires): :attr:`ScaleInReport.blocked` counts them.

Each chosen server then goes through :meth:`~stickyws.twin.cluster.TwinCluster.deregister`, the
same path as a rolling stop: drain notice, deregistration (HAProxy ``maint``), the deregistration
delay, the cut, SIGTERM.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from stickyws.twin.operations import DeregisterReport, ReconnectAnnouncements

if TYPE_CHECKING:
    from stickyws.twin.cluster import TwinCluster

#: The Availability Zones the twin places its servers in, by slot number (the reference stack spans two).
TWIN_AZS = ("az-1", "az-2")
#: Seconds the twin keeps counting reconnect announcements after the last stop.
ANNOUNCEMENT_QUIET_S = 0.3


def availability_zone(name: str) -> str:
    """The zone of server ``name`` (``s<i>``: ``TWIN_AZS[(i - 1) % 2]``; any other name: the first zone)."""
    number = name[1:] if name.startswith("s") else ""
    return TWIN_AZS[(int(number) - 1) % len(TWIN_AZS)] if number.isdigit() and int(number) > 0 else TWIN_AZS[0]


@dataclass(frozen=True)
class Task:
    """A running server as ECS sees it at the scale-in: its zone, its connections, its protection."""

    name: str
    zone: str
    connections: int
    protected: bool


def ecs_choice(tasks: Sequence[Task], count: int, rng: random.Random) -> list[str]:
    """The servers a scale-in by ``count`` stops, in order (see the module doc); fewer when protection blocks."""
    running = Counter(t.zone for t in tasks)
    candidates = [t for t in tasks if not t.protected]
    chosen: list[str] = []
    while len(chosen) < count and candidates:
        zones = sorted({t.zone for t in candidates})
        most = max(running[z] for z in zones)
        zone = rng.choice([z for z in zones if running[z] == most])
        pick = rng.choice([t for t in candidates if t.zone == zone])
        chosen.append(pick.name)
        candidates.remove(pick)
        running[zone] -= 1
    return chosen


@dataclass(frozen=True)
class StoppedServer:
    """One server the scale-in stopped: its zone and connections when chosen, and its stop sequence."""

    name: str
    zone: str
    connections: int
    stop: DeregisterReport


@dataclass(frozen=True)
class ScaleInReport:
    """What a scale-in did.

    * ``tasks``: every running server when ECS chose (zone, connections by HAProxy's count, protection);
    * ``stopped``: the servers stopped, in order; ``blocked``: servers asked for that protection kept
      running (ECS waits for their protection to end);
    * ``moved``: distinct users the stopped servers told to reconnect; ``moved_more_than_once``: users
      told more than once during the scale-in; ``cut``: connections still open when a deregistration
      delay ran out.
    """

    count: int
    tasks: tuple[Task, ...]
    stopped: tuple[StoppedServer, ...]
    blocked: int
    moved: int
    moved_more_than_once: int

    @property
    def protected(self) -> tuple[str, ...]:
        """The servers that held protection when ECS chose."""
        return tuple(t.name for t in self.tasks if t.protected)

    @property
    def cut(self) -> int:
        """Connections the stops cut at the end of their deregistration delay."""
        return sum(s.stop.connections_cut for s in self.stopped)

    def render(self) -> str:
        """One summary line, then one line per server stopped."""
        fleet = ", ".join(
            f"{t.name} ({t.zone}, {t.connections}{', protected' if t.protected else ''})" for t in self.tasks
        )
        stopped = ", ".join(f"{s.name} with {s.connections} connection(s)" for s in self.stopped) or "nothing"
        lines = [
            f"scale-in by {self.count}: fleet {fleet}; stopped {stopped}; "
            f"protected {', '.join(self.protected) or 'none'}; {self.moved} client(s) moved "
            f"({self.moved_more_than_once} more than once), {self.cut} cut"
            + (f"; {self.blocked} not stopped: protected (ECS waits until protection ends)" if self.blocked else "")
        ]
        lines += [f"  {s.stop.render()}" for s in self.stopped]
        return "\n".join(lines)


def fleet(cluster: TwinCluster) -> list[Task]:
    """The running servers of ``cluster`` as ECS sees them now."""
    protected = cluster.task_agent.protected_names()
    return [Task(n, availability_zone(n), cluster.connections(n), n in protected) for n in cluster.serving()]


def scale_in(cluster: TwinCluster, count: int = 1, *, rng: random.Random | None = None) -> ScaleInReport:
    """Lower the service by ``count`` servers as ECS does (see the module doc) and return what it did."""
    if count < 1:
        raise ValueError("a scale-in stops at least one server: give count >= 1")
    tasks = fleet(cluster)
    chosen = ecs_choice(tasks, count, rng or random.Random())
    by_name = {t.name: t for t in tasks}
    cluster.say(
        f"scale-in by {count}: ECS picks {', '.join(chosen) or 'nothing'}"
        f" (protected: {', '.join(t.name for t in tasks if t.protected) or 'none'})"
    )
    announcements = ReconnectAnnouncements(cluster.redis.url, frozenset(chosen))
    stopped = []
    try:
        for name in chosen:
            stopped.append(StoppedServer(name, by_name[name].zone, by_name[name].connections, cluster.deregister(name)))
        announcements.read_until_quiet(ANNOUNCEMENT_QUIET_S)
    finally:
        announcements.close()
    users = announcements.channels
    return ScaleInReport(
        count=count,
        tasks=tuple(tasks),
        stopped=tuple(stopped),
        blocked=count - len(chosen),
        moved=len(users),
        moved_more_than_once=sum(1 for n in users.values() if n > 1),
    )
