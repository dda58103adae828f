"""Assembly: settings, key, registry, server id and triggers from the environment, then run.

``stickyws serve`` calls :func:`run`; tests and embedders call :func:`build_core` and
:class:`~stickyws.server.ws_adapter.RunningServer` directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stickyws.server.auth import TokenVerifier, generate_dev_secret
from stickyws.server.core import ServerCore
from stickyws.server.handler import Handler, echo_handler
from stickyws.server.identity import ENV_ECS_METADATA, fetch_task_metadata, resolve_server_id, task_ip
from stickyws.server.metrics import Metrics
from stickyws.server.registry import InMemoryRegistry, Registry
from stickyws.server.triggers import watch_target_health, watch_task_metadata
from stickyws.settings import (
    ENV_JWT_SECRET,
    ENV_PUBLISH_KEY,
    ENV_REDIS_URL,
    ENV_SERVICE_NAME,
    ENV_TARGET_GROUP_ARN,
    Settings,
    SettingsError,
    from_env,
)


class StartupError(Exception):
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
    #: Authenticates the registry connections (``REDIS_AUTH``, see :mod:`stickyws.registry_auth`); ``None``: none.
    registry_credentials: Any = None


def config_from_env(env: Mapping[str, str], *, dev: bool = False) -> ServerConfig:
    """Resolve and check the configuration; raises :class:`StartupError` with a one-line message."""
    try:
        settings = from_env(env)
        settings.check()
    except SettingsError as exc:
        problems = "; ".join(f.render() for f in exc.findings)
        raise StartupError(f"invalid settings: {problems}") from None
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


def build_core(
    config: ServerConfig, *, handler: Handler = echo_handler, registry: Registry | None = None
) -> ServerCore:
    """A :class:`ServerCore` for ``config`` (Redis registry when ``redis_url`` is set, else in-memory)."""
    kind = "redis" if config.redis_url else "memory"
    if registry is None:
        if config.redis_url:
            from stickyws.server.redis_registry import RedisRegistry

            registry = RedisRegistry(
                config.redis_url,
                credential_provider=config.registry_credentials,
                ack_wait_replicas=config.settings["ack_wait_replicas"],
                ack_wait_timeout_ms=config.settings["ack_wait_timeout_ms"],
            )
        else:
            registry = InMemoryRegistry()
    return ServerCore(
        config.settings,
        server_id=config.server_id,
        registry=registry,
        verifier=TokenVerifier(config.secret, config.settings["jwt_audience"]),
        handler=handler,
        metrics=Metrics(config.settings["metrics_namespace"], service_name=config.service_name),
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


async def serve(config: ServerConfig, host: str, port: int, handler: Handler, env: Mapping[str, str]) -> int:
    """Run until SIGTERM/SIGINT and the drain after it are done; returns the exit code (0)."""
    from stickyws.server.ws_adapter import RunningServer

    core = build_core(config, handler=handler)
    server = RunningServer(core, host, port, publish_key=config.publish_key)
    try:
        await server.start()
    except OSError as exc:
        await core.registry.close()
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    server.install_signal_handlers()
    tune_gc()
    watchers: list[asyncio.Task[Any]] = []
    metadata_url = env.get(ENV_ECS_METADATA)
    if metadata_url:
        watchers.append(asyncio.create_task(watch_task_metadata(metadata_url, core.begin_drain)))
    if config.settings["drain_poll_target_health"]:
        tg_arn = env.get(ENV_TARGET_GROUP_ARN)
        ip = None
        if metadata_url:
            with contextlib.suppress(OSError, ValueError):
                ip = task_ip(await asyncio.to_thread(fetch_task_metadata, metadata_url))
        if tg_arn and ip:
            import boto3

            client = boto3.client("elbv2")
            interval_s = config.settings["target_health_poll_interval_s"]
            poll = watch_target_health(client, tg_arn, ip, port, core.begin_drain, interval_s=interval_s)
            watchers.append(asyncio.create_task(poll))
        else:
            _say(f"drain_poll_target_health is on but {ENV_TARGET_GROUP_ARN} or the task IP is unknown: poller off")
    _say(
        f"serving ws://{host}:{port}/ws as server {config.server_id} "
        f"(registry: {'redis' if config.redis_url else 'in-memory, single instance'})"
    )
    publish_port = config.settings["publish_port"]
    if config.publish_key and publish_port:
        _say(f"publish endpoint: POST http://{host}:{publish_port}/v1/publish")
    try:
        await core.wait_stopped()
    finally:
        for task in watchers:
            task.cancel()
        await server.stop()
    return 0


def run(host: str, port: int | None, *, dev: bool = False, handler: Handler = echo_handler) -> int:
    """Resolve the configuration from ``os.environ`` and serve (uvloop when installed)."""
    env = dict(os.environ)
    config = config_from_env(env, dev=dev)
    if config.dev_key:
        _say("=" * 72)
        _say(f"--dev: {ENV_JWT_SECRET} is not set; signing with a THROWAWAY key made for this process.")
        _say(f"       Tokens for it: {ENV_JWT_SECRET}={config.secret} stickyws token --user NAME")
        _say("       Never run like this in production.")
        _say("=" * 72)
    bind_port = config.settings["port"] if port is None else port
    coro = serve(config, host, bind_port, handler, env)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is in the [server] extra
        return asyncio.run(coro)
    result: int = uvloop.run(coro)
    return result
