"""The local twin: a real redis-server, N servers (the reference server or your own) and a real HAProxy on loopback.

Everything is rendered from ONE :class:`~stickyws.settings.Settings`: HAProxy's configuration
(:mod:`stickyws.twin.haproxy_config`), every server's environment (``server_environment``), and the timing of
the operations below. Every process is started by this object and stopped by its PID
(:mod:`stickyws.localproc`); :meth:`TwinCluster.stop` leaves nothing behind.

Servers: the reference server by default, or any program given as ``server_cmd``, with its
placeholders and environment as :mod:`stickyws.twin.processes` describes; it must answer
``settings["health_check_path"]`` with the health-check matcher's status on 127.0.0.1:{port}.

Operations, in the order AWS performs them (the steps of ``deregister`` and the measure of ``kill``:
:mod:`stickyws.twin.operations`):

``add()``
    Start a server process, wait for its own ``/health`` (ECS: the container is running), then
    register it (``set server addr`` + ``state ready``) and wait until HAProxy's checks report it
    UP (the ALB: ``healthy`` after ``healthy_threshold_count`` checks). HAProxy takes a server it
    leaves maintenance for UP at once, so the twin registers it only once it answers.
``deregister(name)``
    The ECS stop sequence: (1) publish the drain notice exactly as the AWS drain notifier does
    (``SET`` + ``PUBLISH`` on ``keys.drain_key``), (2) ``state maint`` (DeregisterTargets: sticky
    clients are redispatched, open tunnels stay up), (3) wait ``deregistration_delay_s``, ending
    early once the server holds no connection (as the ALB does), (4) ``shutdown sessions`` (the ALB
    cuts what is left), (5) SIGTERM, and SIGKILL after ``stop_timeout_s``. ``drain_notice=False``
    skips (1): the server learns of its end only from SIGTERM, after its clients were cut.
    The :class:`DeregisterReport` says what the server did with its connections (see there).
``kill(name)``
    SIGKILL (a crashed task); HAProxy's checks take it out after ``unhealthy_threshold_count``.
    Until then a client stuck to it gets 503: the twin measures that window with requests carrying
    the server's stickiness cookie and returns a :class:`~stickyws.twin.kill_report.KillReport`.
``rolling_deploy()``
    Replace every running server, one at a time, minimum healthy 100 %: start the replacement,
    wait until it is healthy, then deregister the old server.
``deploy(strategy)``
    ``blue_green``, ``linear`` or ``canary``: green servers behind the other backend (the alternate
    target group), the production rule's weights shifted step by step, the migration hook (by
    default; :mod:`stickyws.twin.migration`), the bake (or a rollback during it), then every blue
    server stopped together (:mod:`stickyws.twin.blue_green`); returns a
    :class:`~stickyws.twin.blue_green.DeployReport`. ``rolling`` is :meth:`rolling_deploy`.

HAProxy has two backends, :data:`~stickyws.twin.haproxy_config.BACKEND` and
:data:`~stickyws.twin.haproxy_config.ALTERNATE_BACKEND`, and a weighted forward between them;
:attr:`TwinCluster.production` names the one that serves (it changes with each blue/green,
linear or canary deployment), and every other operation acts on it.

A server that exits or never answers its health path at start fails :meth:`TwinCluster.start`
with the last :data:`LOG_TAIL_LINES` lines of its log in the error; the work directory (logs,
``haproxy.cfg``) is removed on stop unless ``keep_workdir`` is set, and the error says which.
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from stickyws import protocol
from stickyws.localproc import (
    LocalProcessError,
    RedisServer,
    free_port,
    http_status,
    kill_pid,
    start_process,
    stop_pid,
    wait_for_http,
    wait_for_port,
)
from stickyws.server.task_protection import ENV_ECS_AGENT_URI
from stickyws.settings import ENV_JWT_SECRET, Scope, Settings, SettingsError, Severity
from stickyws.twin import blue_green, haproxy_config, operations, scale_in
from stickyws.twin.blue_green import DeployReport, Hook
from stickyws.twin.haproxy_config import ALTERNATE_WEIGHT_KEY, BACKEND, Layout, Slot
from stickyws.twin.kill_report import KillReport
from stickyws.twin.operations import (
    DRAIN_SOURCE,
    KILL_PROBE_INTERVAL_S,
    DeregisterReport,
    deregistration_delay_s,
)
from stickyws.twin.processes import (
    LOG_TAIL_LINES,
    PLACEHOLDERS,
    ExternalRegistry,
    ServerProcess,
    ServerStatus,
    TwinError,
    expand,
    literal,
    log_tail,
    quote_log,
    server_command,
    spawn,
)
from stickyws.twin.runtime_api import RuntimeApi, RuntimeApiError, ServerState
from stickyws.twin.scale_in import ScaleInReport
from stickyws.twin.task_agent import TaskAgent

__all__ = [
    "DRAIN_SOURCE",
    "KILL_PROBE_INTERVAL_S",
    "LOG_TAIL_LINES",
    "MIN_CAPACITY",
    "PLACEHOLDERS",
    "SERVER_START_TIMEOUT_S",
    "TWIN_PARTS",
    "DeployReport",
    "DeregisterReport",
    "ExternalRegistry",
    "ServerProcess",
    "ServerStatus",
    "TwinCluster",
    "TwinError",
    "deregistration_delay_s",
    "expand",
    "literal",
    "quote_log",
    "server_command",
]

#: Seconds a server process gets to answer ``/health`` after it starts (``TwinCluster.server_start_timeout_s``).
SERVER_START_TIMEOUT_S = 20.0
#: Extra slots beyond what the twin starts with: each ``add`` uses a fresh slot (see haproxy_config).
MIN_CAPACITY = 16


#: What the twin stands for: a load balancer, tasks and their servers (its redis-server is no ElastiCache registry).
TWIN_PARTS: Final = frozenset({Scope.LOAD_BALANCER, Scope.SERVICE, Scope.SERVER})
#: The same on ``platform="eks"``: pods of a Kubernetes workload instead of ECS tasks.
EKS_TWIN_PARTS: Final = frozenset({Scope.LOAD_BALANCER, Scope.KUBERNETES, Scope.SERVER})


@dataclass
class TwinCluster:
    """See the module doc. ``time_scale`` shortens health-check intervals only (haproxy_config).

    The settings must pass :meth:`Settings.check`, except for the errors of the rules named in
    ``allow_rules``: the twin then runs what the ALB must not, to show what breaks (for example
    ``allow_rules=("stickiness",)`` with ``stickiness_enabled=false``), and logs each such error.
    ``server_cmd`` runs your own server instead of the reference one (see the module doc);
    ``server_env`` adds environment variables to every server (placeholders filled as in
    ``server_cmd``); ``log`` receives one line per operation step (the CLI prints them).
    ``registry_url`` runs the servers on that registry (a redis-server or a Redis Cluster you
    started) instead of a redis-server of the twin's own. ``keep_workdir`` keeps the work
    directory (server logs, ``haproxy.cfg``, ``haproxy.log``) when the twin stops or fails to
    start (so does the environment variable ``STICKYWS_TWIN_KEEP``); a ``workdir`` given by the
    caller is never removed. ``server_start_timeout_s`` bounds how long a server may take to
    answer its health path after it starts.
    """

    settings: Settings
    servers: int = 3
    time_scale: float = 1.0
    capacity: int | None = None
    jwt_secret: str | None = None
    server_env: dict[str, str] = field(default_factory=dict)
    workdir: str | None = None
    log: Callable[[str], None] | None = None
    server_cmd: str | Sequence[str] | None = None
    allow_rules: Sequence[str] = ()
    registry_url: str | None = None
    keep_workdir: bool = False
    server_start_timeout_s: float = SERVER_START_TIMEOUT_S
    #: ``ecs`` or ``eks`` (pods deleted and rolled out in Kubernetes' order: :mod:`stickyws.twin.kubernetes`).
    platform: str = "ecs"

    def __post_init__(self) -> None:
        if self.platform not in ("ecs", "eks"):
            raise ValueError(f"platform must be ecs or eks, not {self.platform!r}")
        parts = TWIN_PARTS if self.platform == "ecs" else EKS_TWIN_PARTS
        errors = [f for f in self.settings.validate(parts) if f.severity is Severity.ERROR]
        refused = [f for f in errors if f.rule not in self.allow_rules]
        if refused:
            raise SettingsError(refused)
        for finding in errors:
            self._say(f"twin: running despite {finding.render()}")
        if self.servers < 1:
            raise ValueError("a twin needs at least one server")
        self._command = server_command(self.server_cmd) if self.server_cmd is not None else None
        probe = dict.fromkeys(PLACEHOLDERS, "")  # a bad placeholder fails now, not when a server starts
        for text in [*(self._command or []), *self.server_env.values()]:
            expand(text, probe)
        self.capacity = self.capacity or max(MIN_CAPACITY, 4 * self.servers)
        self.jwt_secret = self.jwt_secret or os.environ.get(ENV_JWT_SECRET) or secrets.token_urlsafe(32)
        self._own_workdir = self.workdir is None
        self.dir = Path(self.workdir or tempfile.mkdtemp(prefix="stickyws-twin-"))
        self.redis: RedisServer | ExternalRegistry = (
            ExternalRegistry(self.registry_url) if self.registry_url else RedisServer()
        )
        self.frontend_port = free_port()
        self.stats_socket = str(self.dir / "haproxy.sock")
        self.weights_map = str(self.dir / "weights.map")
        #: The backend (target group) that serves production traffic; every operation acts on it.
        self.production = BACKEND
        self.config_path = self.dir / "haproxy.cfg"
        self.api = RuntimeApi(self.stats_socket)
        self.procs: dict[str, ServerProcess] = {}
        self.haproxy: subprocess.Popen[bytes] | None = None
        #: The ECS agent's scale-in protection endpoint, one path per server (``ECS_AGENT_URI``).
        self.task_agent = TaskAgent()
        self._slots = haproxy_config.slot_names(self.capacity)
        self._lock = threading.RLock()
        self._started = False

    # Addresses

    @property
    def url(self) -> str:
        """The WebSocket endpoint: ``ws://127.0.0.1:PORT/ws``."""
        return f"ws://127.0.0.1:{self.frontend_port}{protocol.WS_PATH}"

    @property
    def http_url(self) -> str:
        """The same endpoint as ``http://`` (plain requests through HAProxy)."""
        return f"http://127.0.0.1:{self.frontend_port}"

    @property
    def localhost_url(self) -> str:
        """:attr:`url` by host name: ``ws://localhost:PORT/ws``.

        The same listener; use it with clients whose cookie jar keeps no cookie set by an IP
        address (aiohttp's ``CookieJar`` by default): with :attr:`url` they never send the
        stickiness cookie back, and every reconnect lands on any server.
        """
        return f"ws://localhost:{self.frontend_port}{protocol.WS_PATH}"

    @property
    def localhost_http_url(self) -> str:
        """:attr:`http_url` by host name: ``http://localhost:PORT`` (see :attr:`localhost_url`)."""
        return f"http://localhost:{self.frontend_port}"

    @property
    def keeps_workdir(self) -> bool:
        """Whether :meth:`stop` leaves the work directory in place."""
        return self.keep_workdir or not self._own_workdir or os.environ.get("STICKYWS_TWIN_KEEP") is not None

    def token(self, user_id: str, ttl_s: int = 3600) -> str:
        """A connection token for ``user_id`` signed with the twin's key (what ``stickyws token`` prints)."""
        # PyJWT is an optional dependency (the server extra): loaded only when a token is asked for.
        from stickyws.server.auth import TokenVerifier

        assert self.jwt_secret is not None
        return TokenVerifier(self.jwt_secret, self.settings["jwt_audience"]).issue(user_id, ttl_s)

    # Lifecycle

    def start(self) -> TwinCluster:
        """Start redis, the servers and HAProxy; returns once every server is healthy behind HAProxy."""
        try:
            self.redis.start()
            self.task_agent.start()
            for name in self._slots[: self.servers]:
                self._spawn(name)
            for name in list(self.procs):
                self._wait_own_health(self.procs[name])
            binary = shutil.which("haproxy")
            if binary is None:
                raise LocalProcessError("haproxy not found: install the Debian package haproxy (make system-deps)")
            self._start_haproxy(binary)
            for name in list(self.procs):
                self._wait_target(name, healthy=True)
                self.procs[name].phase = "serving"
        except (TwinError, LocalProcessError) as exc:
            self.stop()
            raise type(exc)(f"{exc}\n{self._workdir_note()}") from None
        except BaseException:
            self.stop()
            raise
        self._started = True
        return self

    def stop(self) -> None:
        """Stop HAProxy, every server and redis by PID, and remove the work directory (idempotent)."""
        with self._lock:
            if self.haproxy is not None:
                stop_pid(self.haproxy, timeout_s=3.0)
            running = [p for p in self.procs.values() if p.alive]
            for proc in running:  # SIGTERM all first: the servers shut down side by side, not one after another
                with contextlib.suppress(ProcessLookupError):
                    proc.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 3.0
            for proc in running:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
                if proc.alive:
                    kill_pid(proc.proc)
            for proc in self.procs.values():
                proc.exit_code = proc.proc.returncode
            self.redis.__exit__(None, None, None)
            self.task_agent.stop()
            if not self.keeps_workdir:
                shutil.rmtree(self.dir, ignore_errors=True)
            elif self._started:
                self._say(f"twin: work directory kept: {self.dir}")
            self._started = False

    def __enter__(self) -> TwinCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def pids(self) -> list[int]:
        """PIDs of every process the twin started that is still running."""
        procs = [self.haproxy, self.redis.proc, *(p.proc for p in self.procs.values())]
        return [p.pid for p in procs if p is not None and p.poll() is None]

    # Operations

    def add(self, name: str | None = None, *, backend: str | None = None) -> ServerProcess:
        """Start a server in the next free slot and register it once it is healthy (see the module doc).

        ``backend``: the backend to register it in (default :attr:`production`).
        """
        backend = backend or self.production
        with self._lock:
            name = name or self._next_slot()
            proc = self._spawn(name)
        proc = self._wait_own_health(proc)
        self.api.set_address(backend, name, "127.0.0.1", proc.port)
        self.api.set_state(backend, name, "ready")
        self._wait_target(name, healthy=True, backend=backend)
        proc.phase = "serving"
        self._say(f"{name}: registered and healthy on 127.0.0.1:{proc.port}")
        return proc

    def deregister(self, name: str, *, drain_notice: bool = True) -> DeregisterReport:
        """The ECS stop sequence for ``name`` (see the module doc); returns what it measured."""
        return operations.deregister(
            self.api,
            self._server(name),
            settings=self.settings,
            redis_url=self.redis.url,
            drain_notice=drain_notice,
            say=self._say,
            backend=self.production,
        )

    def kill(self, name: str, *, measure: bool = True) -> KillReport | None:
        """SIGKILL ``name``: its connections drop at once; HAProxy's checks mark it down later.

        With ``measure`` (the default) returns once the twin has seen a request carrying ``name``'s
        stickiness cookie answered by another server and HAProxy report ``name`` down (or after
        the checks' bound), with what it measured (:class:`KillReport`); else returns ``None`` at once.
        """
        proc = self._server(name)
        kill_pid(proc.proc)
        killed_at = time.monotonic()
        proc.exit_code = proc.proc.returncode
        proc.phase = "killed"
        self._say(f"{name}: SIGKILL")
        if not measure:
            return None
        return operations.measure_outage(
            self.api,
            self.settings,
            time_scale=self.time_scale,
            frontend_port=self.frontend_port,
            name=name,
            killed_at=killed_at,
            backend=self.production,
        )

    def rolling_deploy(self, *, drain_notice: bool = True) -> list[DeregisterReport]:
        """Replace every running server one at a time, minimum healthy 100 % (see the module doc)."""
        old = [p.name for p in self.procs.values() if p.phase == "serving"]
        reports = []
        for name in old:
            new = self.add()
            self._say(f"deploy: {new.name} replaces {name}")
            reports.append(self.deregister(name, drain_notice=drain_notice))
        return reports

    def deploy(
        self,
        strategy: str = "rolling",
        *,
        hook: Hook | blue_green.Paced | None = blue_green.PACED,
        bake_s: float | None = None,
        step_bake_s: float | None = None,
        drain_notice: bool = True,
        rollback: bool = False,
        probes: int = 0,
    ) -> DeployReport | list[DeregisterReport]:
        """Deploy a new revision with ``strategy`` (see the module doc).

        ``rolling`` runs :meth:`rolling_deploy` (with ``drain_notice``) and returns its reports;
        ``blue_green``, ``linear`` and ``canary`` run :func:`stickyws.twin.blue_green.deploy` with
        ``hook`` (default: the migration hook; ``None``: none), ``bake_s`` and ``step_bake_s``
        (default: the settings' minutes scaled by ``time_scale``), ``rollback`` and ``probes``, and
        return its :class:`DeployReport`.
        """
        if strategy == "rolling":
            return self.rolling_deploy(drain_notice=drain_notice)
        return blue_green.deploy(
            self, strategy, hook=hook, bake_s=bake_s, step_bake_s=step_bake_s, rollback=rollback, probes=probes
        )

    def scale_in(self, count: int = 1, *, seed: int | None = None) -> ScaleInReport:
        """Lower the service by ``count`` servers as ECS does: protected servers are skipped, the rest chosen
        by zone balance, then at random (``seed``); each goes through :meth:`deregister`
        (:mod:`stickyws.twin.scale_in`)."""
        return scale_in.scale_in(self, count, rng=random.Random(seed))

    def say(self, line: str) -> None:
        """Send one line to the twin's ``log`` (if any)."""
        self._say(line)

    def publish_drain_notice(self, name: str) -> int:
        """SET + PUBLISH the drain notice for ``name`` as the AWS drain notifier does; returns subscribers."""
        return operations.publish_drain_notice(self.redis.url, name)

    # Observation

    def targets(self) -> dict[str, ServerState]:
        """HAProxy's view of every slot in use, by name."""
        return {s.name: s for s in self.api.servers_state(self.production) if s.name in self.procs}

    def connections(self, name: str) -> int:
        """Open connections HAProxy holds to ``name``."""
        return operations.connections(self.api, name, self.production)

    def status(self) -> list[ServerStatus]:
        """One :class:`ServerStatus` per server the twin started, in start order."""
        try:
            targets = self.targets()
            sessions = self.api.current_sessions(self.production)
        except RuntimeApiError:
            targets, sessions = {}, {}
        out = []
        for p in self.procs.values():
            target = targets[p.name].status if p.name in targets else "unknown"
            phase = p.phase if p.alive or p.phase in ("stopped", "killed") else "exited"
            out.append(
                ServerStatus(p.name, p.proc.pid if p.alive else None, p.port, phase, target, sessions.get(p.name, 0))
            )
        return out

    def serving(self) -> list[str]:
        """Names of the servers that are up and registered."""
        return [p.name for p in self.procs.values() if p.phase == "serving" and p.alive]

    def wait_target(self, name: str, *, healthy: bool, timeout_s: float | None = None) -> float:
        """Wait until HAProxy reports ``name`` (un)healthy in :attr:`production`; returns the seconds it took."""
        return self._wait_target(name, healthy=healthy, timeout_s=timeout_s)

    # Internals

    def _workdir_note(self) -> str:
        """Where the logs of a failed start are: kept (and where), or removed (and how to keep them)."""
        if self.keeps_workdir:
            return f"work directory kept: {self.dir} (server-*.log, haproxy.cfg, haproxy.log)"
        return (
            "the work directory and its logs were removed; keep them with --keep-workdir "
            "(TwinCluster(keep_workdir=True))"
        )

    def _where(self, path: Path) -> str:
        """``path`` in full while the twin runs; its bare name during start (the start error says where it is)."""
        return str(path) if self._started else path.name

    def _say(self, line: str) -> None:
        if self.log is not None:
            self.log(line)

    def _server(self, name: str) -> ServerProcess:
        proc = self.procs.get(name)
        if proc is None:
            raise TwinError(f"no server named {name!r}; the twin runs {', '.join(self.procs) or 'none'}")
        if not proc.alive:
            raise TwinError(f"server {name} is not running ({proc.phase}); see {proc.log_path}")
        return proc

    def _next_slot(self) -> str:
        for name in self._slots:
            if name not in self.procs:
                return name
        raise TwinError(
            f"all {self.capacity} server slots were used: restart the twin with a larger capacity "
            "(HAProxy 2.6 cannot add servers with a cookie at run time)"
        )

    def _spawn(self, name: str) -> ServerProcess:
        assert self.jwt_secret is not None
        proc = spawn(
            name,
            self._free_port(),
            settings=self.settings,
            command=self._command,
            server_env={**self.server_env, ENV_ECS_AGENT_URI: literal(self.task_agent.uri(name))},
            redis_url=self.redis.url,
            jwt_secret=self.jwt_secret,
            workdir=self.dir,
        )
        self.procs[name] = proc
        return proc

    def _free_port(self) -> int:
        """A free port that none of the twin's own processes was given (the OS may hand one out twice)."""
        taken = {self.frontend_port, self.redis.port, *(p.port for p in self.procs.values())}
        for _ in range(20):
            port = free_port()
            if port not in taken:
                return port
        raise TwinError("no free TCP port on 127.0.0.1 after 20 tries: is the machine out of ports?")

    def _start_haproxy(self, binary: str, attempts: int = 3) -> None:
        """Render the configuration and start HAProxy; returns once its runtime API and frontend answer.

        A frontend port taken between choosing it and HAProxy binding it (another program on the
        machine) makes HAProxy exit: the twin then picks another port, up to ``attempts`` times.
        """
        for attempt in range(1, attempts + 1):
            layout = Layout(
                frontend_port=self.frontend_port,
                stats_socket=self.stats_socket,
                slots=[Slot(n, self.procs[n].port if n in self.procs else None) for n in self._slots],
                time_scale=self.time_scale,
                weights_map=self.weights_map,
            )
            # the production rule's weighted forward: everything to BACKEND until a deployment shifts it
            Path(self.weights_map).write_text(f"{ALTERNATE_WEIGHT_KEY} 0\n", encoding="utf-8")
            self.config_path.write_text(haproxy_config.render(self.settings, layout), encoding="utf-8")
            log_path = self.dir / "haproxy.log"
            self.haproxy = start_process([binary, "-db", "-f", str(self.config_path)], log_path=log_path)
            deadline = time.monotonic() + 10.0
            while self.haproxy.poll() is None and time.monotonic() < deadline:
                try:
                    self.api.command("show info")
                except RuntimeApiError:
                    time.sleep(0.02)
                    continue
                wait_for_port(self.frontend_port, max(0.1, deadline - time.monotonic()))
                return
            stop_pid(self.haproxy, timeout_s=3.0)
            tail = log_tail(log_path)
            if attempt == attempts or "cannot bind" not in " ".join(tail):
                raise TwinError(f"HAProxy did not start\n{quote_log(log_path).replace('the server', 'HAProxy')}")
            self.frontend_port = self._free_port()

    def _wait_own_health(self, proc: ServerProcess, attempts: int = 3) -> ServerProcess:
        """Wait until ``proc`` answers its health path; returns the server that does. A server that exits
        because its port was taken between choosing it and binding it (another program on the machine;
        its log says "address already in use") is started again on another port, up to ``attempts`` times."""
        for attempt in range(1, attempts + 1):
            try:
                path = self.settings["health_check_path"]
                wait_for_http(proc.port, path, self.server_start_timeout_s, status=200, proc=proc.proc)
                return proc
            except LocalProcessError as exc:
                tail = " ".join(log_tail(proc.log_path)).lower()  # the log is appended to: this attempt's end
                if attempt == attempts or proc.alive or "address already in use" not in tail:
                    if proc.alive:  # never healthy: stop it now, so its log is complete and it holds no port
                        stop_pid(proc.proc, timeout_s=3.0)
                    raise TwinError(
                        f"server {proc.name} did not become healthy: {exc}\n{quote_log(proc.log_path)}"
                        + (f"\n(the whole log: {proc.log_path})" if self._started else "")
                    ) from None
                self._say(f"{proc.name}: port {proc.port} was taken before the server bound it; trying another")
                proc = self._spawn(proc.name)
        raise AssertionError("unreachable")

    def _wait_target(
        self, name: str, *, healthy: bool, timeout_s: float | None = None, backend: str | None = None
    ) -> float:
        """Wait for HAProxy's checks; the default bound is twice the checks' own detection time."""
        backend = backend or self.production
        if timeout_s is None:
            inter = haproxy_config.health_check_interval_s(self.settings, self.time_scale)
            checks = max(self.settings["healthy_threshold_count"], self.settings["unhealthy_threshold_count"])
            timeout_s = max(5.0, 2 * inter * (checks + 1))
        started = time.monotonic()
        while True:
            state = {s.name: s for s in self.api.servers_state(backend)}.get(name)
            if state is not None and state.healthy == healthy:
                return time.monotonic() - started
            if time.monotonic() - started > timeout_s:
                path = self.settings["health_check_path"]
                own = http_status(self.procs[name].port, path) if name in self.procs else None
                log = self._where(self.dir / "haproxy.log")
                raise TwinError(
                    f"HAProxy did not report {name} {'healthy' if healthy else 'unhealthy'} within {timeout_s:g} s "
                    f"(its own {path} answers {own}); see {log}"
                )
            time.sleep(0.02)
