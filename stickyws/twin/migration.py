"""The migration hook in the twin: the Lambda's decisions, called as ECS calls it, on the twin's registry.

On AWS, ECS calls :mod:`stickyws.migration_hook` at ``POST_PRODUCTION_TRAFFIC_SHIFT`` and again
after every ``callBackDelay`` it answers, until it answers ``SUCCEEDED``. :func:`paced_hook`
returns a :data:`stickyws.twin.blue_green.Hook` that does the same in the twin, sharing everything
but the I/O with the Lambda:

* the decisions: :class:`stickyws.migration.Migration` (the plan, the pace, the window, the
  answers; its state carried between calls in ``hookDetails`` exactly as ECS carries it);
* what it reads: blue's heartbeats (``ws:server:<serverId>:heartbeat``, the ``connections``
  field) through :func:`stickyws.migration_hook.read_heartbeats`, the Lambda's own reader;
* what it writes: the drain notices, through :func:`stickyws.drain_notifier.publish` (``SET ... EX``
  and ``PUBLISH`` on ``ws:drain:<serverId>``), with the Lambda's source
  (:data:`stickyws.migration_hook.SOURCE`), so the servers cannot tell the twin from AWS.

What differs is who the servers are: the Lambda asks ECS for the service's tasks and keeps those not
started by the target revision; the twin knows blue's servers (the hook is given their names). A
rollback calls the Lambda again at the rollback's ``PRODUCTION_TRAFFIC_SHIFT`` stage, where the tasks
to move are green's; the twin calls the same hook with green's servers: the roles are swapped,
nothing else.

**Time.** The twin's time scale shortens health checks and the bakes, the waits AWS measures in
tens of seconds or minutes; the servers' drain window and the deregistration delay run as
configured. So the migration's clock is the wall clock: the pace (reconnects per second) and the
drain window the plan rests on are real seconds, and a clock scaled like the bakes would plan
notices closer together than the servers' drain windows allow. What is scaled is ECS's own wait:
the longest ``callBackDelay`` (ECS's default of 30 s when the plan has no notice left to time, the
wait before the call that sees blue empty) becomes ``ceil(30 x time_scale)`` seconds, at least 1,
as the health-check interval does. Every ``callBackDelay`` answered is slept in full, as ECS waits
it (clock and sleep are injectable).

The settings are the hook's: ``migration_pace_per_s``, ``migration_window_s``,
``migration_done_connections`` and ``drain_window_s`` (read from the twin's settings at each
deployment unless given).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from stickyws import drain_notifier, migration_hook
from stickyws.keys import DrainNotice
from stickyws.migration import Decision, HookStatus, Migration, MigrationConfig, MigrationState, decide
from stickyws.settings import Settings

if TYPE_CHECKING:
    import redis

    from stickyws.twin.cluster import TwinCluster

#: ``DrainNotice.source`` of the twin's migration notices: the Lambda's, so the servers see the same notice.
SOURCE = migration_hook.SOURCE
#: Seconds the twin waits for the registry on each call (the Lambda's bound).
REGISTRY_TIMEOUT_S = drain_notifier.REDIS_TIMEOUT_S
#: ECS's longest wait between two calls of a hook that answers IN_PROGRESS (its default), seconds.
ECS_MAX_CALLBACK_S: int = MigrationConfig(pace_per_s=1, window_s=1, drain_window_s=1).max_callback_s


def max_callback_s(time_scale: float) -> int:
    """ECS's longest call-back wait in the twin: :data:`ECS_MAX_CALLBACK_S` scaled, whole seconds, at least 1."""
    return max(1, math.ceil(ECS_MAX_CALLBACK_S * time_scale - 1e-9))


def config_from_settings(
    settings: Settings,
    *,
    pace_per_s: float | None = None,
    window_s: float | None = None,
    done_connections: int | None = None,
    time_scale: float = 1.0,
) -> MigrationConfig:
    """The migration's configuration: the settings the Lambda gets as variables, unless given here, and
    ECS's longest call-back wait scaled by ``time_scale`` (:func:`max_callback_s`).

    Raises ``ValueError`` (from :class:`MigrationConfig`) for a value out of range.
    """
    return MigrationConfig(
        pace_per_s=float(settings["migration_pace_per_s"] if pace_per_s is None else pace_per_s),
        window_s=float(settings["migration_window_s"] if window_s is None else window_s),
        drain_window_s=float(settings["drain_window_s"]),
        done_connections=int(settings["migration_done_connections"] if done_connections is None else done_connections),
        max_callback_s=max_callback_s(time_scale),
    )


@dataclass(frozen=True)
class HookCall:
    """One call of the hook, as the Lambda logs it: when (seconds after the first call), the answer and why.

    ``notices``: the servers told to drain in this call; ``blue_connections``: what their heartbeats
    summed to (``None``: the registry could not be read).
    """

    at_s: float
    status: HookStatus
    notices: tuple[str, ...]
    blue_connections: int | None
    callback_delay_s: int | None
    note: str

    def render(self) -> str:
        """``hook at 2.0 s: IN_PROGRESS, told s2 to drain, 12 connection(s) left; again in 2 s (note)``."""
        told = f"told {'/'.join(self.notices)} to drain" if self.notices else "no notice"
        held = "connections unknown" if self.blue_connections is None else f"{self.blue_connections} connection(s) left"
        again = f"; again in {self.callback_delay_s} s" if self.status == "IN_PROGRESS" else ""
        return f"hook at {self.at_s:.1f} s: {self.status}, {told}, {held}{again} ({self.note})"


class PacedHook:
    """A :data:`~stickyws.twin.blue_green.Hook` that migrates the given servers' clients at the pace (module doc).

    Unset settings are read from the cluster's settings at each call (:func:`config_from_settings`).
    ``calls`` lists every call of the last run; ``stop()`` ends a run at its next call-back (the twin
    stopping), answering nothing more.
    """

    def __init__(
        self,
        *,
        pace_per_s: float | None = None,
        window_s: float | None = None,
        done_connections: int | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.pace_per_s = pace_per_s
        self.window_s = window_s
        self.done_connections = done_connections
        self._clock = clock
        self._stopping = threading.Event()
        self._sleep = sleep or self._wait
        self.calls: list[HookCall] = []

    def config(self, settings: Settings, time_scale: float = 1.0) -> MigrationConfig:
        """This hook's configuration on a twin with ``settings`` and ``time_scale``."""
        return config_from_settings(
            settings,
            pace_per_s=self.pace_per_s,
            window_s=self.window_s,
            done_connections=self.done_connections,
            time_scale=time_scale,
        )

    def _wait(self, seconds: float) -> None:
        self._stopping.wait(seconds)

    def stop(self) -> None:
        """End the current run at its next call-back."""
        self._stopping.set()

    def __call__(self, cluster: TwinCluster, servers: tuple[str, ...]) -> None:
        """Call the migration as ECS calls the Lambda until it answers ``SUCCEEDED``; each call is logged."""
        config = self.config(cluster.settings, cluster.time_scale)
        migration = Migration(config, clock=self._clock)
        self.calls = []
        self._stopping.clear()
        reason = f"twin deployment: {'/'.join(servers)} replaced"
        client = registry_client(cluster.redis.url)
        details: dict[str, Any] | None = None
        first_s: float | None = None
        cluster.say(
            f"hook: migrating the clients of {'/'.join(servers)} at {config.pace_per_s:g} reconnects/s "
            f"(drain window {config.drain_window_s:g} s, window {config.window_s:g} s)"
        )
        try:
            while True:
                decision, now_s = call(migration, client, servers, details, reason=reason)
                details = decision.hook_response(details)["hookDetails"]
                first_s = now_s if first_s is None else first_s
                record = HookCall(
                    at_s=now_s - first_s,
                    status=decision.status,
                    notices=tuple(s.server_id for s in decision.notices),
                    blue_connections=decision.blue_connections,
                    callback_delay_s=decision.callback_delay_s,
                    note=decision.note,
                )
                self.calls.append(record)
                cluster.say(record.render())
                if decision.status != "IN_PROGRESS" or self._stopping.is_set():
                    return
                self._sleep(float(decision.callback_delay_s or 1))
        finally:
            client.close()


def paced_hook(
    *,
    pace_per_s: float | None = None,
    window_s: float | None = None,
    done_connections: int | None = None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] | None = None,
) -> PacedHook:
    """The twin's migration hook (see :class:`PacedHook`; unset values come from the twin's settings)."""
    return PacedHook(
        pace_per_s=pace_per_s, window_s=window_s, done_connections=done_connections, clock=clock, sleep=sleep
    )


def call(
    migration: Migration,
    client: redis.Redis | redis.RedisCluster,
    servers: Sequence[str],
    details: Mapping[str, Any] | None,
    *,
    reason: str,
) -> tuple[Decision, float]:
    """One call: read the heartbeats, decide, write the notices due; returns the decision and its moment.

    As the Lambda: a registry it cannot read decides with ``blue`` unknown (``IN_PROGRESS`` until
    the window ends, no notice); a notice it cannot write is not recorded as sent, nor is any after it.
    Raises ``ValueError`` for a malformed state in ``details``.
    """
    import redis

    state = MigrationState.from_details(details)
    now_s = migration.now()
    try:
        blue: dict[str, int] | None = migration_hook.read_heartbeats(client, servers)
    except redis.RedisError:
        blue = None
    decision = decide(migration.config, state, blue, now_s=now_s)
    written: list[str] = []
    for slot in decision.notices:
        try:
            drain_notifier.publish(client, DrainNotice(server_id=slot.server_id, source=SOURCE, reason=reason))
        except redis.RedisError as exc:
            before = state if state is not None else MigrationState(started_at_s=now_s)
            partial = before.with_sent(s for s in decision.state.sent if s.server_id in written)
            unknown = decide(migration.config, partial, None, now_s=now_s)
            note = f"writing the drain notice for {slot.server_id} failed ({exc}); {unknown.note}"
            return replace(unknown, note=note), now_s
        written.append(slot.server_id)
    return decision, now_s


def registry_client(url: str) -> redis.Redis | redis.RedisCluster:
    """A client of the twin's registry at ``url``: a ``RedisCluster`` on a cluster, as the Lambda's is."""
    import redis

    client: redis.Redis | redis.RedisCluster = redis.Redis.from_url(
        url, socket_connect_timeout=REGISTRY_TIMEOUT_S, socket_timeout=REGISTRY_TIMEOUT_S
    )
    if int(client.info("cluster").get("cluster_enabled", 0)) == 1:
        client.close()
        client = redis.RedisCluster.from_url(
            url, socket_connect_timeout=REGISTRY_TIMEOUT_S, socket_timeout=REGISTRY_TIMEOUT_S
        )
    return client
