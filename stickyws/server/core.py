"""The server core: the parts that serve WebSocket connections, wired, and the server's life.

Free of any WebSocket library: the adapter (:mod:`stickyws.server.ws_adapter`) turns HTTP
requests into :class:`HandshakeRequest`, calls :meth:`ServerCore.admit`, upgrades, and hands the
core a :class:`Transport` plus every text frame. Everything here can be driven by tests with a fake
transport, a real Redis, or the in-memory registry.

The parts, each a class with the state it owns:

* :mod:`~stickyws.server.admission` (:class:`Admissions`): the handshake's decision, the welcome and
  replay of an opened connection, its end (handshakes in flight, pushes that came meanwhile).
* :mod:`~stickyws.server.inbound` (:class:`Inbound`): client frames, the handler, the commit, the ack.
* :mod:`~stickyws.server.outbound` (:class:`Outbound`): writes, slow consumers, session messages in
  seq order, gap fill.
* :mod:`~stickyws.server.topics` (:class:`TopicHub`, :class:`Topics`): subscribers per topic, the
  fan-out of publications, recovery.
* :mod:`~stickyws.server.upkeep` (:class:`Upkeep`): the heartbeat, reconciliation after an outage,
  re-reading what was missed (:class:`RegistryBacklog` is what it works off).
* :mod:`~stickyws.server.drain_run` (:class:`Drainer`): the drain as it runs.

The core holds the connections (``connections``, ``by_user``), the background tasks, the pub/sub
listener that routes each channel to its part, and the lifecycle (:class:`ServerState`):
``STARTING -> SERVING -> DRAINING -> CLOSED``.

* :meth:`start` reads a stored drain notice (a notice published before we subscribed counts),
  starts the heartbeat loop and the pub/sub listener.
* :meth:`begin_drain` (idempotent; any trigger): mark ``draining`` in the heartbeat, answer
  ``/health`` 503, refuse handshakes 503 + Retry-After, tell each client to reconnect at its moment
  of the plan (:mod:`stickyws.server.drain`), close it with 1012, wait until all are gone or the
  deadline, then close what is left. After SIGTERM the remaining plan is squeezed into
  ``shutdown_timeout_s``.
* :meth:`close` (idempotent): stop the loops, close what is still open with 1001, release routes,
  close the registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import traceback
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from stickyws import protocol
from stickyws.registry.errors import RegistryUnavailable
from stickyws.registry.interfaces import Registry
from stickyws.registry.records import OutboxLimits
from stickyws.registry.wire import BusEvent, DrainNotice, Publication, Takeover, UserPush
from stickyws.server.admission import Admissions
from stickyws.server.auth import TokenVerifier
from stickyws.server.core_types import (
    RETRY_AFTER_S,
    Admission,
    Connection,
    HandshakeRequest,
    RegistryBacklog,
    Rejection,
    ServerState,
    SharedFrame,
    Transport,
    origin_refusal,
    origin_warning,
    reraise_if_cancelling,
)
from stickyws.server.drain_run import Drainer, DrainRun
from stickyws.server.handler import Handler, echo_handler
from stickyws.server.inbound import Inbound
from stickyws.server.metrics import Metrics
from stickyws.server.outbound import Outbound
from stickyws.server.protection import ProtectionPolicy
from stickyws.server.task_protection import TaskProtection
from stickyws.server.topics import TopicHub, Topics
from stickyws.server.upkeep import Upkeep
from stickyws.settings import Settings

__all__ = [
    "RETRY_AFTER_S",
    "Admission",
    "Connection",
    "HandshakeRequest",
    "Rejection",
    "ServerCore",
    "ServerState",
    "SharedFrame",
    "Transport",
    "origin_refusal",
    "origin_warning",
]

log = logging.getLogger("stickyws.server")

#: Pause before resubscribing after an unexpected pub/sub failure.
LISTEN_RETRY_S = 0.5
#: How long :meth:`ServerCore.start` waits for the first pub/sub subscription (drain notices, takeover
#: requests, pushes) before it serves anyway: a registry that is down at start must not keep it down.
LISTEN_READY_S = 2.0
#: How long close() waits for its background tasks after cancelling them.
LOOP_STOP_TIMEOUT_S = 2.0


class ServerCore:
    """The reference server minus the socket library (see the module docstring).

    ``clock`` (monotonic seconds) is what every part reads the time from.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        server_id: str,
        registry: Registry,
        verifier: TokenVerifier,
        handler: Handler = echo_handler,
        metrics: Metrics | None = None,
        rng: random.Random | None = None,
        registry_kind: str = "redis",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        #: The settings groups the server reads (``settings.server``, ``settings.delivery``).
        self.sv = settings.server
        self.dv = settings.delivery
        self.server_id = server_id
        self.registry = registry
        self.verifier = verifier
        self.handler = handler
        self.metrics = metrics or Metrics(self.sv.metrics_namespace)
        self.rng = rng or random.Random()
        self.registry_kind = registry_kind
        self.state = ServerState.STARTING
        self.connections: dict[str, Connection] = {}
        self.by_user: dict[str, Connection] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loops: list[asyncio.Task[Any]] = []
        self._listening = asyncio.Event()
        self._closed = asyncio.Event()
        self._close_started = False

        # The parts, each built from what it needs (nothing later refers back to the core but callbacks).
        limits = OutboxLimits(self.dv.outbox_max_messages, self.dv.outbox_max_bytes)
        spawn = self._spawn
        self.backlog = RegistryBacklog()
        self.hub = TopicHub(registry=registry, spawn=spawn)
        self.outbound = Outbound(
            server_id=server_id, registry=registry, metrics=self.metrics, max_output_bytes=self.dv.max_output_bytes,
            backlog=self.backlog, spawn=spawn, forget_topics=self.hub.forget,
        )  # fmt: skip
        self.topics = Topics(
            registry=registry, metrics=self.metrics, hub=self.hub, outbound=self.outbound,
            retention_count=self.dv.topic_retention_count, backlog=self.backlog, spawn=spawn,
        )  # fmt: skip
        self.upkeep = Upkeep(
            server_id=server_id, registry=registry, metrics=self.metrics, server=self.sv,
            connections=self.connections, by_user=self.by_user, backlog=self.backlog, outbound=self.outbound,
            topics=self.topics, spawn=spawn, status=self._heartbeat_status, on_drain_notice=self.begin_drain,
            clock=clock,
        )  # fmt: skip
        self.drainer = Drainer(
            server_id=server_id, registry=registry, metrics=self.metrics, server=self.sv,
            connections=self.connections, write=self.outbound.write, announce=self.upkeep.write_heartbeat,
            spawn=spawn, rng=self.rng, clock=clock,
        )  # fmt: skip
        self.admissions = Admissions(
            server_id=server_id, registry=registry, metrics=self.metrics, verifier=verifier, server=self.sv,
            limits=limits, connections=self.connections, by_user=self.by_user, backlog=self.backlog,
            outbound=self.outbound, topics=self.topics, upkeep=self.upkeep, spawn=spawn, serving=self._serving,
            tell_reconnect=self.drainer.tell_reconnect, on_violation=self.on_violation, clock=clock,
        )  # fmt: skip
        self.inbound = Inbound(
            server_id=server_id, registry=registry, metrics=self.metrics, handler=handler, server=self.sv,
            delivery=self.dv, limits=limits, backlog=self.backlog, outbound=self.outbound, topics=self.topics,
            upkeep=self.upkeep, spawn=spawn, clock=clock,
        )  # fmt: skip

        task = settings.task
        #: Task scale-in protection (:mod:`stickyws.server.task_protection`): active with ``ECS_AGENT_URI``.
        self.protection = TaskProtection(
            policy=ProtectionPolicy(server_id=server_id, expires_min=task.scale_in_protection_expires_min,
                                    unprotected_percent=task.scale_in_unprotected_percent, clock=clock),
            agent_uri=TaskProtection.agent_uri_from_env(), enabled=task.scale_in_protection,
            heartbeats=lambda: registry.server_heartbeats(), connections=lambda: len(self.connections),
            draining=lambda: self.draining, interval_s=self.sv.heartbeat_interval_s,
        )  # fmt: skip

        #: Handle one client text frame (:meth:`stickyws.server.inbound.Inbound.on_text`, the hot path: the
        #: adapter calls the part's own method, no call in between).
        self.on_text: Callable[[Connection, str | bytes], Coroutine[Any, Any, None]] = self.inbound.on_text

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start serving: heartbeat loop, pub/sub listener, and a first look for a drain notice.

        Handshakes are answered 503 until the listener holds its channels (drain notices, takeover
        requests, pushes), for at most :data:`LISTEN_READY_S`: a takeover published at once is not lost."""
        if self.state is not ServerState.STARTING or self._loops:
            return
        self._loops.append(asyncio.create_task(self.upkeep.loop(), name="stickyws-heartbeat"))
        self._loops.append(asyncio.create_task(self._listen(), name="stickyws-listen"))
        if self.protection.active:
            self._loops.append(asyncio.create_task(self.protection.loop(), name="stickyws-scale-in-protection"))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(LISTEN_READY_S):
                await self._listening.wait()
        if self.state is ServerState.STARTING:  # a drain notice may have come first
            self.state = ServerState.SERVING
        self.metrics.audit("server_start", server=self.server_id, registry=self.registry_kind)

    def _serving(self) -> bool:
        return self.state is ServerState.SERVING

    def _heartbeat_status(self) -> str:
        return "draining" if self.draining else "serving"

    @property
    def draining(self) -> bool:
        """True from the first drain trigger on."""
        return self.drainer.run is not None

    @property
    def drain_run(self) -> DrainRun | None:
        """The drain begun (its source, start and ``done`` event), or ``None``."""
        return self.drainer.run

    @property
    def reconnects_sent(self) -> list[tuple[float, str]]:
        """Drain instructions sent, as ``(monotonic time, conn_id)`` (for tests and the audit log)."""
        return self.drainer.reconnects_sent

    def health(self, accepting: bool = True) -> tuple[int, dict[str, Any]]:
        """``(status, body)`` of ``/health``: 200 while serving and accepting, else 503."""
        registry = "ok" if self.registry.available else "degraded"
        if self.registry_kind == "memory":
            registry = "memory"
        ok = self.state is ServerState.SERVING and accepting
        status = self.state.value
        if self.state is ServerState.SERVING and not accepting:
            status = "not_accepting"
        body = {
            "status": status,
            "serverId": self.server_id,
            "connections": len(self.connections),
            "draining": self.draining,
            "registry": registry,
        }
        return (200 if ok else 503), body

    def begin_drain(self, source: str, reason: str = "", *, sigterm: bool = False) -> None:
        """Start draining (idempotent; a later SIGTERM squeezes the rest of the plan)."""
        if sigterm:
            self.drainer.sigterm.set()
        if self.drainer.run is not None or self.state is ServerState.CLOSED:
            return
        self.state = ServerState.DRAINING
        self.metrics.audit("drain_start", server=self.server_id, source=source, reason=reason, sigterm=sigterm)
        self.drainer.begin(source)
        self._spawn(self.protection.release())

    async def wait_stopped(self) -> None:
        """Return once SIGTERM has come AND the drain has finished (the moment to exit 0)."""
        await self.drainer.sigterm.wait()
        if self.drainer.run is not None:  # None only when SIGTERM came after close()
            await self.drainer.run.done.wait()

    async def wait_drained(self, timeout_s: float) -> None:
        """Wait until the current drain has finished (raises ``TimeoutError`` after ``timeout_s``)."""
        async with asyncio.timeout(timeout_s):
            while self.drainer.run is None:  # noqa: ASYNC110 - the drain object does not exist yet
                await asyncio.sleep(0.01)
            await self.drainer.run.done.wait()

    async def close(self) -> None:
        """Stop for good (idempotent).

        Steps: stop accepting (state ``CLOSED``), cancel the heartbeat and listener, close every
        connection still open with 1001, release their routes, close the registry.
        """
        if self._close_started:
            await self._closed.wait()
            return
        self._close_started = True
        self.state = ServerState.CLOSED
        for task in self._loops:
            task.cancel()
        if self._loops:
            # asyncio.wait neither raises the tasks' errors nor swallows a cancellation of close() itself.
            _, stuck = await asyncio.wait(self._loops, timeout=LOOP_STOP_TIMEOUT_S)
            for task in stuck:
                where = "".join(traceback.format_stack(task.get_stack(limit=8)[-1])) if task.get_stack() else "?"
                log.warning("%s did not stop within %g s, at:\n%s", task.get_name(), LOOP_STOP_TIMEOUT_S, where)
        conns = list(self.connections.values())
        await asyncio.gather(
            *(c.close(protocol.CLOSE_GOING_AWAY, "server shutting down") for c in conns), return_exceptions=True
        )
        for c in conns:
            await self.on_closed(c)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=LOOP_STOP_TIMEOUT_S)
        await self.protection.shutdown()
        with contextlib.suppress(RegistryUnavailable):
            await self.upkeep.write_heartbeat("stopped", ttl_s=1)
        await self.registry.close()
        self.metrics.audit("server_stop", server=self.server_id)
        self._closed.set()

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ connections (the adapter's calls)

    async def admit(self, req: HandshakeRequest) -> Admission | Rejection:
        """Decide a handshake; on :class:`Admission` the caller must :meth:`open` or :meth:`abandon` it."""
        return await self.admissions.admit(req)

    def preflight(self, req: HandshakeRequest) -> Rejection | None:
        """What :meth:`admit` would answer now, without claiming a route or opening a session.

        ``None``: the handshake would be admitted as far as this server can tell; else the same
        :class:`Rejection` (status, code, ``Retry-After``). Checks, in :meth:`admit`'s order: state
        (503 draining), capacity (503), origin (403), token (401/403), resume token (403), registry
        outage under ``registry_down_policy=reject`` (503). It reads nothing from the registry, so it
        cannot predict a 409 (``connection_policy=reject`` with the user live elsewhere). Counted in
        no metric: it is a question, not a handshake.
        """
        return self.admissions.preflight(req)

    async def abandon(self, admission: Admission) -> None:
        """The upgrade failed after :meth:`admit`: free the slot and the route."""
        await self.admissions.abandon(admission)

    async def open(self, admission: Admission, transport: Transport) -> Connection:
        """Register an upgraded connection, send ``connected``, then what the client missed.

        Order on the socket: ``connected``; on resume with ``lastSeq`` a ``gap`` frame if the outbox
        lost messages, then the kept messages after ``lastSeq``; pushes that arrived during the
        handshake; for each subscribed topic the publications after the client's ``since`` position
        (or ``unrecoverable``); then live traffic.
        """
        return await self.admissions.open(admission, transport)

    async def on_closed(self, conn: Connection) -> None:
        """Forget a connection that ended; release its route if no newer one of the user is here."""
        await self.admissions.closed(conn)

    async def on_violation(self, conn: Connection, close_code: int, error_code: str, message: str) -> None:
        """A protocol violation: send an ``error`` frame, then close with ``close_code``."""
        self.outbound.write(conn, protocol.error(error_code, message))
        await conn.close(close_code, message[:120])

    # ------------------------------------------------------------------ registry upkeep

    async def beat(self) -> None:
        """One heartbeat (:meth:`stickyws.server.upkeep.Upkeep.beat`); never raises for a registry outage."""
        await self.upkeep.beat()

    async def reconcile(self) -> None:
        """Re-register every live connection and session, and finish releases missed while down."""
        await self.upkeep.reconcile()

    async def recheck(self, conns: Sequence[Connection] | None = None) -> None:
        """Write every message and publication that ``conns`` (default: all) missed while the registry or
        its pub/sub was away (:meth:`stickyws.server.upkeep.Upkeep.recheck`)."""
        await self.upkeep.recheck(conns)

    # ------------------------------------------------------------------ the pub/sub listener

    def _on_user_push(self, push: UserPush) -> None:
        conn = self.by_user.get(push.user_id)
        if conn is None:
            self.admissions.stash(push)
            return
        self.outbound.push(conn, push)

    async def _on_takeover(self, takeover: Takeover) -> None:
        """Another server took one of our users over: close our connection of that user with 4001."""
        user_id, by = takeover.user_id, takeover.by
        conn = self.by_user.get(user_id)
        if conn is None or by == self.server_id:
            return
        with contextlib.suppress(RegistryUnavailable):
            if await self.registry.owner(user_id) == self.server_id:
                return  # a stale request: the user came back here after that takeover
        if self.by_user.get(user_id) is conn:
            self.metrics.audit("route", decision="taken_over", reason="takeover", user=user_id,
                               server=self.server_id, by=by, remote=conn.remote)  # fmt: skip
            del self.by_user[user_id]
            await conn.close(protocol.CLOSE_TAKEN_OVER, f"taken over by {by}")

    async def _listen(self) -> None:
        """Hold the server's channels (drain notices, takeover requests, pushes; topics join as they are
        subscribed) and route each message to its part; resubscribe after a failure."""
        on_publication = self.topics.on_publication

        async def on_event(event: BusEvent) -> None:
            if type(event) is UserPush:
                self._on_user_push(event)
            elif type(event) is Publication:
                on_publication(event)
            elif type(event) is DrainNotice:
                if event.server_id == self.server_id:
                    self.begin_drain(event.source, event.reason)
            elif type(event) is Takeover:
                await self._on_takeover(event)

        async def on_subscribed() -> None:
            self._listening.set()
            with contextlib.suppress(RegistryUnavailable):
                notice = await self.registry.drain_notice(self.server_id)
                if notice is not None:
                    self.begin_drain(notice.source, notice.reason)
            # Pushes and publications announced while the listener was away are read back.
            self._spawn(self.upkeep.recheck_quietly())

        while True:
            try:
                await self.registry.listen(self.server_id, on_event, on_subscribed)
            except Exception:  # listen() only returns by cancellation; anything else: log and resubscribe
                reraise_if_cancelling()
                log.exception("drain/takeover subscription failed; resubscribing")
                await asyncio.sleep(LISTEN_RETRY_S)
