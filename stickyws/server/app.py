"""Assembly: settings, key, registry, server id and triggers from the environment, then run.

``stickyws serve`` calls :func:`run`; tests and embedders call :func:`build_core` and
:class:`~stickyws.server.ws_adapter.RunningServer` directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import os
import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Final, TextIO

from stickyws import compiled
from stickyws.errors import ReferenceServerError
from stickyws.registry.interfaces import Registry
from stickyws.registry.memory import InMemoryRegistry
from stickyws.server.auth import TokenVerifier, generate_dev_secret
from stickyws.server.core import ServerCore
from stickyws.server.handler import Handler, echo_handler
from stickyws.server.identity import (
    ENV_ECS_METADATA,
    fetch_task_metadata,
    resolve_revision,
    resolve_server_id,
    task_ip,
)
from stickyws.server.metrics import Metrics
from stickyws.server.triggers import watch_target_health, watch_task_metadata
from stickyws.server.ws_adapter import RunningServer
from stickyws.settings import (
    ENV_JWT_SECRET,
    ENV_PUBLISH_KEY,
    ENV_REDIS_URL,
    ENV_SERVICE_NAME,
    ENV_TARGET_GROUP_ARN,
    Settings,
    SettingsError,
    env_name,
    from_env,
)
from stickyws.settings.scopes import K8S_PARTS, STACK_PARTS, Scope


class StartupError(ReferenceServerError):
    """The server cannot start; the message says what to set (printed as one line, exit 2)."""


@dataclass(frozen=True)
class ServerConfig:
    """Everything :func:`run` needs, resolved from the environment by :func:`config_from_env`."""

    settings: Settings
    secret: str
    redis_url: str | None
    server_id: str
    service_name: str | None
    dev_key: bool
    #: Key of the publish endpoint (``STICKYWS_PUBLISH_KEY``); without one the endpoint stays off.
    publish_key: str | None = None
    #: True when ``publish_key`` is a throwaway key made by ``--dev`` for this process.
    dev_publish_key: bool = False
    #: Authenticates the registry connections (``REDIS_AUTH``, see :mod:`stickyws.registry_auth`); ``None``: none.
    registry_credentials: Any = None


#: Set by Kubernetes in every pod's environment: the server runs on Kubernetes, not on ECS.
KUBERNETES_ENV: Final = "KUBERNETES_SERVICE_HOST"


def platform_parts(env: Mapping[str, str]) -> frozenset[Scope]:
    """The parts the server's settings are judged for at start-up: a Kubernetes deployment's in a pod
    (:data:`KUBERNETES_ENV` set; no ECS service rule, such as Fargate's 120 s stop timeout, applies there),
    else the ECS stack's."""
    return K8S_PARTS if env.get(KUBERNETES_ENV) else STACK_PARTS


def config_from_env(env: Mapping[str, str], *, dev: bool = False) -> ServerConfig:
    """Resolve and check the configuration (for the platform's parts, :func:`platform_parts`); raises
    :class:`StartupError` with a one-line message."""
    try:
        settings = from_env(env)
        settings.check(platform_parts(env))
    except SettingsError as exc:
        problems = "; ".join(f.render() for f in exc.findings)
        raise StartupError(f"invalid settings: {problems}") from None
    revision = resolve_revision(settings.server.revision, env)
    if revision != settings.server.revision:
        settings = settings.with_overrides({"revision": revision})
    secret = env.get(ENV_JWT_SECRET, "")
    dev_key = False
    if not secret:
        if not dev:
            raise StartupError(
                f"{ENV_JWT_SECRET} is not set: set it to the HS256 token signing key (on AWS, inject it from "
                "Secrets Manager), or run `stickyws serve --dev` for a throwaway key"
            )
        secret, dev_key = generate_dev_secret(), True
    redis_url = env.get(ENV_REDIS_URL) or None
    credentials = None
    if redis_url:
        # Only with a Redis URL (start-up time: it loads redis-py, which `serve --dev` never needs).
        from stickyws.registry_auth import RegistryAuthError, credential_provider_from_env

        try:
            credentials = credential_provider_from_env(env)
        except RegistryAuthError as exc:
            raise StartupError(f"registry authentication: {exc}") from None
    return ServerConfig(
        settings=settings,
        secret=secret,
        redis_url=redis_url,
        registry_credentials=credentials,
        server_id=resolve_server_id(env),
        service_name=env.get(ENV_SERVICE_NAME) or None,
        dev_key=dev_key,
        publish_key=env.get(ENV_PUBLISH_KEY) or None,
    )


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a bind address) is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def http_url(host: str, port: int, path: str = "") -> str:
    """``http://host:port/path``, with brackets around an IPv6 address."""
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}{path}"


def with_dev_publish_key(config: ServerConfig, host: str) -> ServerConfig:
    """``config`` with a throwaway publish key when it has none and ``host`` is loopback (``--dev``).

    The publish endpoint needs a key; ``--dev`` makes one so that ``stickyws publish --endpoint``
    (and any local backend) can push to the in-memory registry of this one process. Only on a
    loopback address: a key printed on a console must not guard a port open to the network."""
    if config.publish_key or not is_loopback(host):
        return config
    return replace(config, publish_key=secrets.token_urlsafe(24), dev_publish_key=True)


def open_metrics(
    namespace: str, service_name: str | None, *, dev: bool, metrics_file: str | None
) -> tuple[Metrics, TextIO | None]:
    """The server's :class:`Metrics` and the file it writes EMF lines to (``None``: no file to close).

    ``metrics_file``: a path (EMF lines appended to it), ``"-"`` (stdout) or ``None`` (stdout, for
    CloudWatch; off with ``dev``). Audit lines stay on stdout. Raises :class:`StartupError` when the
    file cannot be opened."""
    if metrics_file is None or metrics_file == "-":
        return Metrics(namespace, service_name=service_name, emit_emf=metrics_file == "-" or not dev), None
    try:
        sink = open(metrics_file, "a", encoding="utf-8")  # noqa: SIM115 - run() closes it after serving
    except OSError as exc:
        raise StartupError(
            f"cannot write --metrics-file {metrics_file}: {exc.strerror or exc}; pass a writable path, or - for stdout"
        ) from None
    return Metrics(namespace, service_name=service_name, emf_out=sink), sink


def build_core(
    config: ServerConfig,
    *,
    handler: Handler = echo_handler,
    registry: Registry | None = None,
    metrics: Metrics | None = None,
) -> ServerCore:
    """A :class:`ServerCore` for ``config`` (Redis registry when ``redis_url`` is set, else in-memory).

    ``metrics``: where EMF and audit lines go (default: both on stdout)."""
    kind = "redis" if config.redis_url else "memory"
    if registry is None:
        if config.redis_url:
            # Only with a Redis URL (start-up time: it loads redis-py, which `serve --dev` never needs).
            from stickyws.registry.redis_registry import RedisRegistry

            registry = RedisRegistry(
                config.redis_url,
                credential_provider=config.registry_credentials,
                ack_wait_replicas=config.settings.delivery.ack_wait_replicas,
                ack_wait_timeout_ms=config.settings.delivery.ack_wait_timeout_ms,
            )
        else:
            registry = InMemoryRegistry()
    return ServerCore(
        config.settings,
        server_id=config.server_id,
        registry=registry,
        verifier=TokenVerifier(config.secret, config.settings.server.jwt_audience),
        handler=handler,
        metrics=metrics or Metrics(config.settings.server.metrics_namespace, service_name=config.service_name),
        registry_kind=kind,
    )


def _say(text: str) -> None:
    print(f"stickyws: {text}", file=sys.stderr, flush=True)


#: Net container allocations between the garbage collector's young-generation passes while serving
#: (Python's default: 700). Each message allocates dozens of short-lived containers; at the default,
#: collections took 8 % of the server's CPU on the exactly-once echo (bench/findings.md).
GC_YOUNG_THRESHOLD = 10_000


def tune_gc(young_threshold: int = GC_YOUNG_THRESHOLD) -> None:
    """Freeze what startup built (modules, settings, the app: never scanned again) and collect the young
    generation every ``young_threshold`` allocations; the older generations keep their defaults."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(young_threshold, older, oldest)


async def serve(
    config: ServerConfig,
    host: str,
    port: int,
    handler: Handler,
    env: Mapping[str, str],
    *,
    publish_port: int | None = None,
    metrics: Metrics | None = None,
) -> int:
    """Run until SIGTERM/SIGINT and the drain after it are done; returns the exit code (0).

    ``publish_port``: the publish endpoint's port (default: the ``publish_port`` setting; 0: off)."""
    core = build_core(config, handler=handler, metrics=metrics)
    server = RunningServer(core, host, port, publish_key=config.publish_key, publish_port=publish_port)
    try:
        await server.start()
    except OSError as exc:
        await core.registry.close()
        if config.publish_key and server.publish_port:
            raise StartupError(
                f"cannot listen on {host}:{port} and {host}:{server.publish_port} (publish endpoint): "
                f"{exc.strerror or exc}; pick free ports with --port and --publish-port (0 turns the endpoint off)"
            ) from None
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    server.install_signal_handlers()
    tune_gc()
    watchers: list[asyncio.Task[Any]] = []
    metadata_url = env.get(ENV_ECS_METADATA)
    if metadata_url:
        watchers.append(asyncio.create_task(watch_task_metadata(metadata_url, core.begin_drain)))
    if config.settings.server.drain_poll_target_health:
        tg_arn = env.get(ENV_TARGET_GROUP_ARN)
        ip = None
        if metadata_url:
            with contextlib.suppress(OSError, ValueError):
                ip = task_ip(await asyncio.to_thread(fetch_task_metadata, metadata_url))
        if tg_arn and ip:
            import boto3

            client = boto3.client("elbv2")
            interval_s = config.settings.server.target_health_poll_interval_s
            poll = watch_target_health(client, tg_arn, ip, port, core.begin_drain, interval_s=interval_s)
            watchers.append(asyncio.create_task(poll))
        else:
            _say(f"drain_poll_target_health is on but {ENV_TARGET_GROUP_ARN} or the task IP is unknown: poller off")
    _say(
        f"serving ws://{host}:{port}/ws as server {config.server_id} "
        f"(registry: {'redis' if config.redis_url else 'in-memory, single instance'}; "
        f"build: {compiled.state().describe()})"
    )
    if config.publish_key and server.publish_port:
        _say(f"publish endpoint: POST {http_url(host, server.publish_port, '/v1/publish')}")
    try:
        await core.wait_stopped()
    finally:
        for task in watchers:
            task.cancel()
        await server.stop()
    return 0


def _dev_banner(config: ServerConfig, host: str, publish_port: int, metrics_file: str | None) -> None:
    """What ``--dev`` made up or turned off, and the commands that use it (stderr)."""
    _say("=" * 72)
    if config.dev_key:
        _say(f"--dev: {ENV_JWT_SECRET} is not set; signing with a THROWAWAY key made for this process.")
        _say(f"       Tokens for it: {ENV_JWT_SECRET}={config.secret} stickyws token --user NAME")
    if config.dev_publish_key:
        _say(f"--dev: {ENV_PUBLISH_KEY} is not set; the publish endpoint uses a THROWAWAY key.")
        _say(
            f"       Push: {ENV_PUBLISH_KEY}={config.publish_key} stickyws publish "
            f'--endpoint {http_url(host, publish_port)} --user NAME \'{{"text":"hi"}}\''
        )
    elif not config.publish_key and publish_port:
        _say(
            f"--dev: publish endpoint off: --dev makes a publish key only on a loopback --host; "
            f"set {ENV_PUBLISH_KEY} to serve it on {host}:{publish_port}"
        )
    elif not publish_port:
        _say(f"--dev: publish endpoint off (its port is 0: --publish-port or {env_name('publish_port')})")
    if metrics_file is None:
        _say("--dev: metrics (EMF) off; --metrics-file PATH writes them to PATH, --metrics-file - to stdout")
    _say("       Never run like this in production.")
    _say("=" * 72)


def run(
    host: str,
    port: int | None,
    *,
    dev: bool = False,
    handler: Handler = echo_handler,
    publish_port: int | None = None,
    metrics_file: str | None = None,
) -> int:
    """Resolve the configuration from ``os.environ`` and serve (uvloop when installed).

    ``dev``: a throwaway signing key when ``STICKYWS_JWT_SECRET`` is unset, a throwaway publish key
    when ``STICKYWS_PUBLISH_KEY`` is unset and ``host`` is loopback, and no EMF lines unless
    ``metrics_file`` says where. ``publish_port``: see :func:`serve`. ``metrics_file``: see
    :func:`open_metrics`."""
    env = dict(os.environ)
    config = config_from_env(env, dev=dev)
    bind_port = config.settings.server.port if port is None else port
    bind_publish_port = config.settings.delivery.publish_port if publish_port is None else publish_port
    metrics, sink = open_metrics(
        config.settings.server.metrics_namespace, config.service_name, dev=dev, metrics_file=metrics_file
    )
    try:
        if dev:
            if bind_publish_port:
                config = with_dev_publish_key(config, host)
            _dev_banner(config, host, bind_publish_port, metrics_file)
        coro = serve(config, host, bind_port, handler, env, publish_port=bind_publish_port, metrics=metrics)
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvloop is in the [server] extra
            return asyncio.run(coro)
        result: int = uvloop.run(coro)
        return result
    finally:
        if sink is not None:
            sink.close()
