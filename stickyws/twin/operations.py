"""What the twin's deregistrations and kills do and measure, in the order AWS performs them.

:func:`deregister` is the ECS stop sequence for one server and returns a :class:`DeregisterReport`;
:func:`publish_drain_notice` is its first step, done exactly as the AWS drain notifier does it;
:func:`measure_outage` watches a killed server's failover and returns a
:class:`~stickyws.twin.kill_report.KillReport`. :class:`~stickyws.twin.cluster.TwinCluster` runs them
(see its module doc for the whole sequence of each operation).
"""

from __future__ import annotations

import http.client
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stickyws import keys
from stickyws.keys import DrainNotice
from stickyws.localproc import stop_pid
from stickyws.settings import Settings
from stickyws.twin import haproxy_config
from stickyws.twin.haproxy_config import BACKEND
from stickyws.twin.kill_report import KillReport, aws_outage_s, expected_outage_s, served_by, sticky_cookie
from stickyws.twin.processes import ServerProcess
from stickyws.twin.runtime_api import RuntimeApi

#: ``DrainNotice.source`` of the notices the twin publishes.
DRAIN_SOURCE = "twin"
#: Seconds between two sticky requests while :func:`measure_outage` measures the outage.
KILL_PROBE_INTERVAL_S = 0.01
#: HAProxy's answers to a request for a dead server: 503 (connect refused, ``retries 0``), 502 (the
#: server died with the request on it), 504 (connect timeout).
REFUSED_STATUSES = (502, 503, 504)
#: Seconds the twin keeps reading reconnect announcements after a deregistered server exited.
ANNOUNCEMENT_GRACE_S = 0.3


def deregistration_delay_s(settings: Settings) -> float:
    """How long :meth:`TwinCluster.deregister` waits before cutting connections: the target group's delay."""
    return float(settings["deregistration_delay_s"])


@dataclass(frozen=True)
class DeregisterReport:
    """What one deregistration did, and what the server did with its connections.

    Every count is of connections HAProxy held to the server (``show stat`` ``scur``: WebSocket
    tunnels, and HTTP requests in flight such as long polls):

    * ``connections_at_start``: open when the server was put in maintenance;
    * ``connections_cut``: still open when the deregistration delay ran out, closed by
      ``shutdown sessions`` (what the ALB does to them);
    * ``closed_before_cut``: ``connections_at_start - connections_cut``, the connections that ended
      during the delay. HAProxy logs a clean close from either side alike, so this is "closed by the
      server, or by its clients on their own": compare it with ``told_to_reconnect``;
    * ``told_to_reconnect``: reconnect instructions the server announced for its clients on the
      registry (``ws:reconnect:{userId}`` with its ``serverId``, as stickyws.v1 servers do) from the
      drain notice until it exited. 0 for a server that does not speak the protocol.
    """

    name: str
    drain_notice: bool
    drained_s: float
    connections_cut: int
    exit_code: int | None
    connections_at_start: int = 0
    told_to_reconnect: int = 0

    @property
    def closed_before_cut(self) -> int:
        """Connections that ended during the deregistration delay (see the class doc)."""
        return max(0, self.connections_at_start - self.connections_cut)

    def render(self) -> str:
        """``s1: deregistered in 1.2 s: 5 connections: 0 cut, 5 closed before the cut, 5 told to reconnect``."""
        return (
            f"{self.name}: deregistered in {self.drained_s:.1f} s: {self.connections_at_start} connection"
            f"{'s' if self.connections_at_start != 1 else ''}: {self.connections_cut} cut, "
            f"{self.closed_before_cut} closed before the cut, {self.told_to_reconnect} told to reconnect; "
            f"exit code {self.exit_code}"
        )


def connections(api: RuntimeApi, name: str, backend: str = BACKEND) -> int:
    """Open connections HAProxy holds to ``name`` in ``backend``."""
    return api.current_sessions(backend).get(name, 0)


def publish_drain_notice(redis_url: str, name: str) -> int:
    """SET + PUBLISH the drain notice for ``name`` as the AWS drain notifier does; returns subscribers."""
    # redis-py (the server extra; stickyws.drain_notifier needs it too) is loaded only when a notice is published.
    import redis

    from stickyws.drain_notifier import publish

    client: redis.Redis | redis.RedisCluster = redis.Redis.from_url(redis_url, socket_timeout=3)
    try:
        if int(client.info("cluster").get("cluster_enabled", 0)) == 1:  # as the drain notifier does
            client.close()
            client = redis.RedisCluster.from_url(redis_url, socket_timeout=3)
        return publish(client, DrainNotice(server_id=name, source=DRAIN_SOURCE, reason="twin deregister"))
    finally:
        client.close()


def deregister(
    api: RuntimeApi,
    proc: ServerProcess,
    *,
    settings: Settings,
    redis_url: str,
    drain_notice: bool,
    say: Callable[[str], None],
    backend: str = BACKEND,
) -> DeregisterReport:
    """The ECS stop sequence for ``proc`` (see :mod:`stickyws.twin.cluster`); returns what it measured."""
    name = proc.name
    proc.phase = "deregistering"
    delay_s = deregistration_delay_s(settings)
    started = time.monotonic()
    announcements = ReconnectAnnouncements(redis_url, name)
    try:
        if drain_notice:
            publish_drain_notice(redis_url, name)
            say(f"{name}: drain notice published")
        api.set_state(backend, name, "maint")
        at_start = connections(api, name, backend)
        say(
            f"{name}: deregistered (maint) with {at_start} connection(s); waiting up to {delay_s:g} s for them to drain"
        )
        deadline = started + delay_s
        remaining = at_start
        while remaining > 0 and time.monotonic() < deadline:
            announcements.read(0.05)
            remaining = connections(api, name, backend)
        drained_s = time.monotonic() - started
        api.shutdown_sessions(backend, name)
        say(f"{name}: deregistration delay over after {drained_s:.2f} s, {remaining} connection(s) cut")
        stop_pid(proc.proc, timeout_s=float(settings["stop_timeout_s"]))
        proc.exit_code = proc.proc.returncode
        proc.phase = "stopped"
        say(f"{name}: SIGTERM, exited with {proc.exit_code}")
        announcements.read_until_quiet(ANNOUNCEMENT_GRACE_S)
    finally:
        announcements.close()
    return DeregisterReport(name, drain_notice, drained_s, remaining, proc.exit_code, at_start, announcements.count)


def measure_outage(
    api: RuntimeApi,
    settings: Settings,
    *,
    time_scale: float,
    frontend_port: int,
    name: str,
    killed_at: float,
    backend: str = BACKEND,
) -> KillReport:
    """Probe with ``name``'s stickiness cookie and watch HAProxy's state until both show the failover."""
    cookie = sticky_cookie(settings, name)
    inter = haproxy_config.health_check_interval_s(settings, time_scale)
    checks = int(settings["unhealthy_threshold_count"])
    bound_s = max(5.0, 2 * inter * (checks + 1))
    refused_s: float | None = None
    moved_to: str | None = None
    marked_down_s: float | None = None
    refusals = 0
    while time.monotonic() - killed_at < bound_s:
        states = {s.name: s for s in api.servers_state(backend)}
        if marked_down_s is None and name in states and not states[name].healthy:
            marked_down_s = time.monotonic() - killed_at
        if cookie is not None and moved_to is None:
            status, server = _sticky_request(frontend_port, settings["health_check_path"], cookie)
            if status in REFUSED_STATUSES:
                refusals += 1
            elif status is not None and server is not None and server != name:
                refused_s, moved_to = time.monotonic() - killed_at, server
        if marked_down_s is not None:
            others = [s for s in states.values() if s.name != name and s.healthy]
            if cookie is None or moved_to is not None or not others:
                break
        time.sleep(KILL_PROBE_INTERVAL_S)
    return KillReport(
        name=name,
        sticky=cookie is not None,
        refused_s=refused_s,
        refusals=refusals,
        moved_to=moved_to,
        marked_down_s=marked_down_s,
        expected_s=expected_outage_s(settings, time_scale),
        aws_s=aws_outage_s(settings),
        checks=checks,
        interval_s=inter,
        aws_interval_s=float(settings["health_check_interval_s"]),
    )


def _sticky_request(frontend_port: int, path: str, cookie: str) -> tuple[int | None, str | None]:
    """``GET`` ``path`` through HAProxy with ``cookie``: the status and the server that answered."""
    conn = http.client.HTTPConnection("127.0.0.1", frontend_port, timeout=2.0)
    try:
        conn.request("GET", path, headers={"Host": "localhost", "Cookie": cookie})
        response = conn.getresponse()
        response.read()
        return response.status, served_by(response.headers.get_all("Set-Cookie") or [])
    except (OSError, http.client.HTTPException):
        return None, None
    finally:
        conn.close()


class ReconnectAnnouncements:
    """Counts the reconnect instructions servers announce on ``ws:reconnect:*`` (see DeregisterReport).

    ``count`` is what ``server_id`` announced (any of them, given several; every server's when ``None``);
    ``channels`` counts them per channel (one channel per user). A registry that cannot be reached
    counts nothing (the report then says 0 told to reconnect).
    """

    def __init__(self, redis_url: str, server_id: str | frozenset[str] | None) -> None:
        # redis-py is an optional dependency (the server extra): loaded only when a server is deregistered.
        import redis

        self.server_ids = frozenset({server_id}) if isinstance(server_id, str) else server_id
        self.count = 0
        self.channels: Counter[str] = Counter()
        self._client = redis.Redis.from_url(redis_url, socket_timeout=3)
        self._pubsub: Any = self._client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        try:
            self._pubsub.psubscribe(keys.reconnect_channel("*"))
            self._pubsub.get_message(timeout=1.0)  # the subscription is active before the drain notice goes out
        except redis.RedisError:
            self._pubsub = None

    def read(self, timeout_s: float) -> int:
        """Count what arrives within ``timeout_s``; returns how many messages arrived."""
        if self._pubsub is None:
            time.sleep(timeout_s)
            return 0
        import redis

        seen = 0
        deadline = time.monotonic() + timeout_s
        try:
            while (left := deadline - time.monotonic()) > 0:
                message = self._pubsub.get_message(timeout=left)
                if message is None:
                    continue
                seen += 1
                try:
                    body = json.loads(message["data"])
                except (TypeError, ValueError):
                    continue
                ours = isinstance(body, dict) and body.get("type") == "reconnect"
                if ours and (self.server_ids is None or body.get("serverId") in self.server_ids):
                    self.count += 1
                    channel = message.get("channel", b"")
                    self.channels[channel.decode() if isinstance(channel, bytes) else str(channel)] += 1
        except redis.RedisError:
            self._pubsub = None
        return seen

    def read_until_quiet(self, quiet_s: float) -> None:
        """Keep counting until nothing arrived for ``quiet_s`` (bounded: at most 20 quiet periods)."""
        for _ in range(20):
            if self.read(quiet_s) == 0:
                return

    def close(self) -> None:
        """Close the subscription and its connection."""
        if self._pubsub is not None:
            self._pubsub.close()
        self._client.close()
