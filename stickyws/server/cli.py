"""``stickyws serve``, ``stickyws token`` and ``stickyws server drain-self``: the reference server's commands.

Heavy imports (aiohttp, redis, jwt) happen inside the ``run`` functions so ``stickyws --help`` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from stickyws.server.handler import echo_handler, load_handler
from stickyws.settings import ENV_JWT_SECRET, SettingsError, from_env

#: Default bind address: loopback, so local runs are not exposed; the Dockerfile passes ``--host 0.0.0.0``.
DEFAULT_HOST = "127.0.0.1"


def register(subparsers: Any) -> None:
    """Add ``serve``, ``token`` and ``server drain-self`` to the ``stickyws`` parser."""
    serve = subparsers.add_parser(
        "serve",
        help="run the reference sticky WebSocket server",
        description="Run the reference server. Settings come from STICKYWS_* variables; the signing key from "
        "STICKYWS_JWT_SECRET; the registry from REDIS_URL (unset: in-memory, one instance); the publish "
        "endpoint's key from STICKYWS_PUBLISH_KEY.",
    )
    serve.add_argument("--host", default=DEFAULT_HOST, help=f"bind address (default {DEFAULT_HOST})")
    serve.add_argument("--port", type=int, default=None, help="port (default: the `port` setting, 8080)")
    serve.add_argument(
        "--dev",
        action="store_true",
        help="local development: throwaway keys for what is not set (STICKYWS_JWT_SECRET; STICKYWS_PUBLISH_KEY on "
        "a loopback --host, printed with a ready `stickyws publish` command) and no metric lines unless "
        "--metrics-file says where",
    )
    serve.add_argument(
        "--publish-port",
        type=int,
        default=None,
        metavar="P",
        help="port of the publish endpoint, POST /v1/publish (default: the `publish_port` setting, 8081; 0: off); "
        "it listens when a publish key is set",
    )
    serve.add_argument(
        "--metrics-file",
        default=None,
        metavar="PATH",
        help="append the CloudWatch EMF metric lines to PATH instead of stdout ('-': stdout). "
        "Default: stdout, or off with --dev",
    )
    serve.add_argument("--handler", default=None, metavar="MODULE:ATTR", help="application handler to load")
    serve.set_defaults(run=run_serve)

    token = subparsers.add_parser(
        "token", help="print a connection token", description="Print a JWT signed with STICKYWS_JWT_SECRET."
    )
    token.add_argument("--user", required=True, help="user id (the token's sub)")
    token.add_argument("--ttl-s", type=int, default=3600, help="lifetime in seconds (default 3600)")
    token.set_defaults(run=run_token)

    group = subparsers.add_parser(
        "server",
        help="act on the reference server running beside this command (drain-self: the Kubernetes preStop hook)",
        description="Commands for the reference server running in the same container or host.",
    )
    commands = group.add_subparsers(dest="server_command", metavar="SERVER_COMMAND", required=True)
    drain_self = commands.add_parser(
        "drain-self",
        help="the preStop hook: ask the server on 127.0.0.1 to drain after pre_stop_delay_s; returns when it ended",
        description="Ask the reference server on 127.0.0.1 to wait pre_stop_delay_s (it keeps serving), then "
        "drain as for any other stop cause, and return once the drain has ended (at most "
        "termination_grace_period_s). Settings come from STICKYWS_* variables, as the server's do. Prints one "
        "line; exit code 0 once drained.",
    )
    drain_self.add_argument(
        "--port", type=int, default=None, help="the server's port (default: the `port` setting, 8080)"
    )
    drain_self.add_argument(
        "--delay-s",
        type=float,
        default=None,
        metavar="S",
        help="seconds the server keeps serving before it drains (default: the server's `pre_stop_delay_s`)",
    )
    drain_self.set_defaults(run=run_drain_self)


def _fail(message: str) -> int:
    """Print one ``stickyws: ...`` line and return exit code 2.

    Printed here rather than raised as ``stickyws.cli.CommandError`` so the result is the same when
    the dispatcher runs as ``python -m stickyws.cli`` (where it is ``__main__``, another class).
    """
    print(f"stickyws: {message}", file=sys.stderr)
    return 2


def run_serve(args: argparse.Namespace) -> int:
    """``stickyws serve``."""
    # Only when the server runs: it loads aiohttp and uvloop (optional: the server extra) and takes start-up time.
    from stickyws.server.app import StartupError, run

    if args.publish_port is not None and not 0 <= args.publish_port <= 65535:
        return _fail("--publish-port must be a port number (0 turns the publish endpoint off)")
    try:
        handler = load_handler(args.handler) if args.handler else echo_handler
        return run(
            args.host,
            args.port,
            dev=args.dev,
            handler=handler,
            publish_port=args.publish_port,
            metrics_file=args.metrics_file,
        )
    except (StartupError, ValueError) as exc:
        return _fail(str(exc))


def run_token(args: argparse.Namespace) -> int:
    """``stickyws token``."""
    # Only for this command: it loads PyJWT (optional: the server extra).
    from stickyws.server.auth import TokenVerifier

    secret = os.environ.get(ENV_JWT_SECRET, "")
    if not secret:
        return _fail(f"{ENV_JWT_SECRET} is not set: export the server's signing key first")
    if args.ttl_s <= 0:
        return _fail("--ttl-s must be a positive number of seconds")
    try:
        audience = from_env(os.environ)["jwt_audience"]
    except SettingsError as exc:
        return _fail("; ".join(f.render() for f in exc.findings))
    print(TokenVerifier(secret, audience).issue(args.user, args.ttl_s))
    return 0


def run_drain_self(args: argparse.Namespace) -> int:
    """``stickyws server drain-self`` (:mod:`stickyws.server.prestop`)."""
    from stickyws.server.prestop import CLIENT_MARGIN_S, DrainSelfError, drain_self, prestop_timing

    try:
        settings = from_env(os.environ)
    except SettingsError as exc:
        return _fail("; ".join(f.render() for f in exc.findings))
    port = settings["port"] if args.port is None else args.port
    if not 0 < port <= 65535:
        return _fail("--port must be a port number, the one the server listens on")
    _, grace_s = prestop_timing(settings)
    if args.delay_s is not None and not 0 <= args.delay_s <= grace_s:
        return _fail(f"--delay-s must be from 0 to termination_grace_period_s ({grace_s:g} s)")
    try:
        result = drain_self(port, grace_s + CLIENT_MARGIN_S, delay_s=args.delay_s)
    except DrainSelfError as exc:
        return _fail(f"drain-self: {exc}")
    print(result.line(), flush=True)
    return 0 if result.status == 200 else 1
