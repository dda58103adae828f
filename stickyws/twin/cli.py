"""``stickyws twin up``: the local twin of the ALB in one terminal, driven by typed commands.

``twin up [--servers N] [--time-scale F] [--set NAME=VALUE ...] [--settings-file F]
[--server-cmd CMD] [--server-env NAME=VALUE ...] [--health-path PATH] [--start-timeout S]
[--keep-workdir]`` starts redis-server, N servers (the reference server, or CMD with ``{port}``,
``{server_id}``, ``{redis_url}`` and ``{jwt_secret}`` filled per server) and HAProxy, prints the
URL (by address and by the name ``localhost``), a token and client command per demo user, the
demo page link (the servers allow the twin's own page origins), and one status line per server,
then reads commands on stdin (one per line):

``status`` | ``deregister NAME`` | ``kill NAME`` | ``add`` | ``scale-in [N]`` | ``deploy`` | ``deploy-no-drain`` |
``deploy blue_green|linear|canary`` | ``token USER`` | ``help`` | ``quit``

With ``--platform eks`` (:mod:`stickyws.twin.kubernetes`): ``delete NAME`` deletes a pod in
Kubernetes' order, ``deploy`` is a Deployment's rollout and ``deploy-no-prestop`` the same rollout
with a preStop delay of 0.

``deploy STRATEGY [--no-hook] [--rollback] [--probes N]`` runs an ECS blue/green, linear or
canary deployment with the settings' ``traffic_step_percent``, and ``bake_time_min`` and
``step_bake_time_min`` scaled by ``--time-scale`` (:mod:`stickyws.twin.blue_green`), and prints its
report. The migration hook moves blue's clients at ``migration_pace_per_s`` unless ``--no-hook``
(what ECS does alone: cleanup cuts them); ``--rollback`` rolls back during the bake; ``--probes N``
runs N probe clients through it, for the lost and doubled counts.

Ctrl-C, SIGTERM and ``quit`` stop every process the twin started, by PID, before anything is
reported: a closed stdout (nobody reads the output any more) cannot keep them running. The end of
stdin only stops reading commands: ``stickyws twin up < /dev/null`` keeps running until a signal.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

from stickyws.cli_errors import CommandError
from stickyws.settings import Settings, SettingsError, load_file
from stickyws.twin.browser import allow_page_origins, demo_url
from stickyws.twin.traffic_shift import SHIFT_STRATEGIES

#: Settings the interactive twin uses unless overridden: short enough to watch a deregistration.
DEMO_OVERRIDES: dict[str, Any] = {
    "deregistration_delay_s": 10,
    "drain_window_s": 6,
    "shutdown_timeout_s": 5,
    "stop_timeout_s": 10,
    "reconnect_cap_s": 10,
    "heartbeat_interval_s": 2,
    "heartbeat_ttl_s": 6,
}
#: On ``--platform eks``, on top: a preStop wait (3 s) beyond the propagation (2 s), inside the grace period
#: (20 s) with the drain window and the shutdown, and ending with the drain window before the delay.
EKS_DEMO_OVERRIDES: dict[str, Any] = {
    "pre_stop_delay_s": 3,
    "deregistration_propagation_s": 2,
    "termination_grace_period_s": 20,
    "replicas": 3,
}
#: Health checks every 30 s x 0.05 = 1.5 s: a new server is healthy after ~3 s.
DEMO_TIME_SCALE = 0.05
DEMO_USERS = ("alice", "bob")

HELP = """commands:
  status               one line per server: pid, port, phase, target health, connections
  deregister NAME      the ECS stop sequence: drain notice, maint, deregistration delay, cut, SIGTERM
  kill NAME            SIGKILL (a crashed task); reports how long its sticky clients got 503
  add                  start one more server and register it once healthy
  scale-in [N]         stop N servers (default 1) as an ECS scale-in does: servers holding scale-in protection
                       are skipped, the rest chosen by zone balance, then at random; each stopped as deregister
  deploy               rolling deployment, minimum healthy 100 % (with the drain notice)
  deploy-no-drain      the same without the drain notice: clients are cut (1006) at the end of the delay
  deploy STRATEGY [--no-hook] [--rollback] [--probes N]
                       blue_green, linear or canary: green servers behind the alternate backend, production
                       weights shifted (new handshakes only), the migration hook moving blue's clients at
                       migration_pace_per_s, bake, then every blue server stopped together.
                       --no-hook: no migration (ECS alone: blue's open sockets are cut at cleanup);
                       --rollback: weights back to blue during the bake, green's clients moved back;
                       --probes N: N probe clients through the deployment (counts lost and doubled messages)
  delete NAME          (--platform eks) delete a pod: preStop hook and deregistration together, SIGTERM when the
                       hook returns, SIGKILL at termination_grace_period_s
  deploy               (--platform eks) a rollout under maxSurge/maxUnavailable, each new pod ready before an
                       old one is deleted
  deploy-no-prestop    (--platform eks) the same rollout with a preStop delay of 0
  token USER           print a connection token for USER
  quit                 stop everything (also Ctrl-C / SIGTERM)"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``twin up``."""
    twin = subparsers.add_parser("twin", help="run the local twin of the ALB (HAProxy + servers + redis)")
    sub = twin.add_subparsers(dest="twin_command", metavar="TWIN_COMMAND", required=True)
    up = sub.add_parser("up", help="start the twin and read commands on stdin until Ctrl-C")
    up.add_argument("--servers", type=int, default=3, help="reference servers to start (default 3)")
    up.add_argument(
        "--time-scale",
        type=float,
        default=DEMO_TIME_SCALE,
        help=f"multiplies the health-check interval and timeout only (default {DEMO_TIME_SCALE})",
    )
    up.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="override a setting")
    up.add_argument("--settings-file", help="JSON or TOML file of settings (applied before --set)")
    up.add_argument(
        "--allow-rule",
        action="append",
        default=[],
        metavar="RULE",
        help="run although the settings break RULE (e.g. stickiness with --set stickiness_enabled=false), "
        "to see what breaks",
    )
    up.add_argument(
        "--server-cmd",
        metavar="CMD",
        help="run your own server instead of the reference one, e.g. 'node server.js --port {port}' "
        "(placeholders {port} {server_id} {redis_url} {jwt_secret}; split like a shell, never run by one)",
    )
    up.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an environment variable for every server (same placeholders), e.g. SECRET={jwt_secret}",
    )
    up.add_argument(
        "--health-path",
        metavar="PATH",
        help="the path HAProxy and the twin check on each server (= --set health_check_path=PATH)",
    )
    up.add_argument(
        "--start-timeout",
        type=float,
        default=None,
        metavar="S",
        help="seconds each server may take to answer its health path after it starts (default 20)",
    )
    up.add_argument(
        "--keep-workdir",
        action="store_true",
        help="keep the work directory (server logs, haproxy.cfg, haproxy.log) when the twin stops or fails to start",
    )
    up.add_argument(
        "--platform",
        choices=("ecs", "eks"),
        default="ecs",
        help="ecs (default): deregister and deploy follow the ECS stop sequence; eks: 'delete NAME' and 'deploy' "
        "follow Kubernetes (preStop and deregistration together, SIGTERM when the hook returns)",
    )
    up.set_defaults(run=run_up)


def _settings(args: argparse.Namespace) -> Any:
    settings = Settings().with_overrides(DEMO_OVERRIDES)
    if args.platform == "eks":
        settings = settings.with_overrides(EKS_DEMO_OVERRIDES)
    if args.settings_file:
        settings = settings.with_overrides(load_file(args.settings_file))
    pairs = {}
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep:
            raise CommandError(f"--set {item!r}: use NAME=VALUE, e.g. --set idle_timeout_s=300")
        pairs[name.strip()] = value
    if args.health_path is not None:
        pairs["health_check_path"] = args.health_path
    return settings.with_overrides(pairs)


def _server_env(args: argparse.Namespace) -> dict[str, str]:
    env = {}
    for item in args.server_env:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise CommandError(f"--server-env {item!r}: use NAME=VALUE, e.g. --server-env PORT={{port}}")
        env[name.strip()] = value
    return env


def run_up(args: argparse.Namespace, stdin: TextIO | None = None, out: TextIO | None = None) -> int:
    """Start the twin, print its endpoint and status, serve commands, stop everything on exit."""
    # Only when the twin runs (start-up time: `stickyws --help` imports every command module).
    from stickyws.localproc import LocalProcessError
    from stickyws.twin.cluster import SERVER_START_TIMEOUT_S, TwinCluster, TwinError

    stdin = stdin or sys.stdin
    say = _Output(out or sys.stdout)

    if args.servers < 1:
        raise CommandError("--servers must be at least 1")
    start_timeout_s = SERVER_START_TIMEOUT_S if args.start_timeout is None else args.start_timeout
    if start_timeout_s <= 0:
        raise CommandError("--start-timeout must be a positive number of seconds, e.g. --start-timeout 60")
    try:
        cluster = TwinCluster(
            _settings(args),
            servers=args.servers,
            time_scale=args.time_scale,
            log=say,
            server_cmd=args.server_cmd,
            server_env=_server_env(args),
            allow_rules=tuple(args.allow_rule),
            keep_workdir=args.keep_workdir,
            server_start_timeout_s=start_timeout_s,
            platform=args.platform,
        )
    except (TwinError, SettingsError) as exc:
        raise CommandError(str(exc)) from None
    allow_page_origins(cluster)
    stop = threading.Event()
    # Both signals explicitly: a shell starts background jobs with SIGINT ignored.
    previous = {sig: signal.signal(sig, lambda *_: _interrupt()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            cluster.start()
        except (LocalProcessError, TwinError) as exc:
            raise CommandError(str(exc), code=1) from None
        say(f"twin up: {cluster.url if args.server_cmd is None else cluster.http_url}")
        by_name = cluster.localhost_url if args.server_cmd is None else cluster.localhost_http_url
        say(f"same listener: {by_name} (by name: some cookie jars, aiohttp's among them, drop cookies set by an IP)")
        assert cluster.haproxy is not None
        kept = " (kept when the twin stops)" if cluster.keeps_workdir else ""
        say(f"haproxy pid {cluster.haproxy.pid}, redis-server pid {cluster.redis.pid}, logs in {cluster.dir}{kept}")
        for status in cluster.status():
            say(status.render())
        for user in DEMO_USERS if args.server_cmd is None else ():  # tokens only mean something to stickyws
            say(f"client for {user}: stickyws client {cluster.url} --token {cluster.token(user)}")
        if args.server_cmd is None:
            say(f"demo page: {demo_url(cluster.http_url, {user: cluster.token(user) for user in DEMO_USERS})}")
        say("type 'help' for commands; Ctrl-C stops everything")
        reader = threading.Thread(target=_read_commands, args=(cluster, stdin, say, stop), daemon=True)
        reader.start()
        while not stop.is_set():
            stop.wait(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        # Stop first, report after: nothing said here may keep the processes from being stopped.
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not interrupt the stop
        say("twin: stopping every process it started")
        try:
            cluster.stop()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        say("twin: stopped")
    return 0


def _interrupt() -> None:
    raise KeyboardInterrupt


class _Output:
    """Prints whole lines from any thread; once the reader has gone (closed pipe), drops them silently.

    A twin whose output nobody reads any more (``stickyws twin up | head``, a closed terminal) must
    still stop every process it started on SIGTERM: a write error here would skip that.
    """

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.lock = threading.Lock()
        self.gone = False

    def __call__(self, line: str) -> None:
        with self.lock:
            if self.gone:
                return
            try:
                print(line, file=self.out, flush=True)
            except (BrokenPipeError, ValueError, OSError):
                self.gone = True
                self._silence()

    def _silence(self) -> None:
        """Point the stream at /dev/null so the interpreter's final flush does not fail again."""
        if self.out is not sys.stdout:
            return
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        except (OSError, ValueError):
            pass


def _read_commands(cluster: Any, stdin: TextIO, say: Callable[[str], None], stop: threading.Event) -> None:
    for line in stdin:
        if stop.is_set():
            return
        words = line.split()
        if not words:
            continue
        try:
            if execute(cluster, words, say) == "quit":
                stop.set()
                return
        except Exception as exc:  # an operator typo or a failed step must not kill the twin
            say(f"error: {exc}")


def execute(cluster: Any, words: list[str], say: Callable[[str], None]) -> str:
    """Run one typed command; returns ``"quit"`` to stop the twin, else ``"ok"``."""
    command, rest = words[0].lower(), words[1:]
    if command in ("quit", "exit", "stop"):
        return "quit"
    if command == "help":
        say(HELP)
    elif command == "status":
        for status in cluster.status():
            say(status.render())
    elif command in ("deregister", "kill") and len(rest) == 1:
        if command == "deregister":
            say(cluster.deregister(rest[0]).render())
        else:
            say(cluster.kill(rest[0]).render())
    elif command == "add" and not rest:
        cluster.add()
    elif command == "scale-in" and len(rest) <= 1 and all(w.isdigit() and int(w) > 0 for w in rest):
        say(cluster.scale_in(int(rest[0]) if rest else 1).render())
    elif _eks_command(command, rest) and cluster.platform == "eks":
        _execute_eks(cluster, command, rest)
    elif command in ("deploy", "deploy-no-drain") and not rest:
        started = time.monotonic()
        reports = cluster.rolling_deploy(drain_notice=command == "deploy")
        for report in reports:
            say(report.render())
        cut = sum(r.connections_cut for r in reports)
        told = sum(r.told_to_reconnect for r in reports)
        say(
            f"deploy: replaced {len(reports)} servers in {time.monotonic() - started:.1f} s, "
            f"{cut} connections cut, {told} told to reconnect"
        )
    elif command == "deploy" and rest and rest[0] in SHIFT_STRATEGIES:
        options = deploy_options(rest[1:])
        if isinstance(options, str):
            say(f"deploy {rest[0]}: {options}\n{HELP}")
        else:
            say(cluster.deploy(rest[0], **options).render())
    elif command == "token" and len(rest) == 1:
        say(cluster.token(rest[0]))
    else:
        say(f"unknown command {' '.join(words)!r}\n{HELP}")
    return "ok"


def deploy_options(words: list[str]) -> dict[str, Any] | str:
    """The keyword arguments of ``TwinCluster.deploy`` that ``words`` ask for, or what is wrong with them.

    ``--no-hook`` (``hook=None``), ``--rollback``, ``--probes N`` (N >= 1).
    """
    options: dict[str, Any] = {}
    rest = list(words)
    while rest:
        word = rest.pop(0)
        if word == "--no-hook":
            options["hook"] = None
        elif word == "--rollback":
            options["rollback"] = True
        elif word == "--probes":
            value = rest.pop(0) if rest else ""
            if not value.isdigit() or int(value) < 1:
                return f"--probes takes a number of clients, e.g. --probes 20 (got {value or 'nothing'!r})"
            options["probes"] = int(value)
        else:
            return f"unknown option {word!r}: use --no-hook, --rollback or --probes N"
    return options


def _eks_command(command: str, rest: list[str]) -> bool:
    """Whether the words are a command of ``--platform eks``: ``delete NAME``, ``deploy``, ``deploy-no-prestop``."""
    return (command == "delete" and len(rest) == 1) or (command in ("deploy", "deploy-no-prestop") and not rest)


def _execute_eks(cluster: Any, command: str, rest: list[str]) -> None:
    """``delete NAME``, ``deploy`` and ``deploy-no-prestop`` of a twin on ``--platform eks``."""
    from stickyws.twin import kubernetes

    if command == "delete":
        kubernetes.delete(cluster, rest[0])  # each step, and the report, go to the twin's log
    else:
        kubernetes.rollout(cluster, pre_stop_delay_s=0 if command == "deploy-no-prestop" else None)
