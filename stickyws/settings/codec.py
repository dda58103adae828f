"""Reading and writing settings as text: CDK context, JSON/TOML files and the container environment.

The environment rendering is the contract between the CDK stack and the server: the task
definition carries ``to_env(settings)`` and the server rebuilds the same object with
``from_env(os.environ)``. Every setting ``name`` travels as ``STICKYWS_<NAME>`` (upper case).
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stickyws.settings.errors import SettingsError, SettingValueError
from stickyws.settings.findings import Finding, Severity
from stickyws.settings.model import FIELDS, Settings
from stickyws.settings.values import ENV_PREFIX, env_name, parse_bool, parse_value, render_value

__all__ = [
    "CONTEXT_SETTINGS_FILE",
    "ENV_JWT_SECRET",
    "ENV_PREFIX",
    "ENV_REDIS_URL",
    "ENV_SERVER_ID",
    "ENV_SERVICE_NAME",
    "ENV_TARGET_GROUP_ARN",
    "LABEL_SERVER_ENV",
    "LABEL_SERVER_MODE",
    "env_name",
    "from_env",
    "load_file",
    "parse_bool",
    "parse_value",
    "read_server_environment",
    "render_value",
    "resolve",
    "server_environment",
    "server_labels",
    "to_env",
]

#: Environment variable that carries the HS256 token signing key (a secret, never a setting).
ENV_JWT_SECRET = "STICKYWS_JWT_SECRET"
#: Environment variable that carries the key of the HTTP publish endpoint (a secret; unset: endpoint off).
ENV_PUBLISH_KEY = "STICKYWS_PUBLISH_KEY"
#: Environment variable with the registry URL (``redis://`` or ``rediss://``); unset: in-memory registry.
ENV_REDIS_URL = "REDIS_URL"
#: Environment variable naming how a client authenticates to the registry: ``iam``, ``token`` or ``none``
#: (unset: ``none``, credentials in the URL apply). Rendered by ``ConnectionRegistry`` for the service and
#: the drain notifier; read by :mod:`stickyws.registry_auth`.
ENV_REDIS_AUTH = "REDIS_AUTH"
#: Environment variable with the registry's RBAC user name (the user id, for IAM authentication).
ENV_REDIS_USER = "REDIS_USER"
#: Environment variable with the cache an IAM token is signed for: the replication group id or the
#: Serverless cache name.
ENV_REDIS_IAM_CACHE_NAME = "REDIS_IAM_CACHE_NAME"
#: Environment variable that says the IAM cache is an ElastiCache Serverless cache (``true``/``false``).
ENV_REDIS_IAM_SERVERLESS = "REDIS_IAM_SERVERLESS"
#: Environment variable with the registry password (token mode; an ECS secret, never a plain variable).
ENV_REDIS_PASSWORD = "REDIS_PASSWORD"
#: Environment variable with the ARN of the Secrets Manager secret that holds the registry password as
#: ``{"password": ...}`` (token mode where secrets cannot be injected, e.g. the drain-notifier Lambda).
ENV_REDIS_PASSWORD_SECRET_ARN = "REDIS_PASSWORD_SECRET_ARN"
#: Environment variable that overrides the server id (default: ECS task id, else hostname-pid).
ENV_SERVER_ID = "STICKYWS_SERVER_ID"
#: Environment variable with the ECS service name, the ``ServiceName`` dimension of the server's metrics
#: (rendered by the service construct; Fargate's task metadata does not carry it).
ENV_SERVICE_NAME = "STICKYWS_SERVICE_NAME"
#: Environment variable with the target group ARN, for the optional DescribeTargetHealth drain trigger.
ENV_TARGET_GROUP_ARN = "STICKYWS_TARGET_GROUP_ARN"
#: Container label (Docker label of the task definition) with the server mode, so an auditor of a template or
#: a live service knows whose server runs there without trusting variables your server never reads.
LABEL_SERVER_MODE = "stickyws.server-mode"
#: Container label with ``server_env`` as text (``NAME=VARIABLE,...``): which variables carry which settings.
LABEL_SERVER_ENV = "stickyws.server-env"
#: CDK context key naming a JSON or TOML settings file.
CONTEXT_SETTINGS_FILE = "settings_file"


def to_env(settings: Settings) -> dict[str, str]:
    """Every setting as ``{STICKYWS_NAME: text}``, sorted by name: the reference server's environment."""
    return {env_name(name): render_value(value) for name, value in sorted(settings.items())}


def server_environment(settings: Settings) -> dict[str, str]:
    """The settings the deployment's server is told, as environment variables.

    The reference server (``server_mode=reference``): :func:`to_env`, every setting. Your own server
    (``server_mode=own``): only the settings named in ``server_env``, under the names given there, in
    that order (none when it is empty).
    """
    if settings.server.server_mode != "own":
        return to_env(settings)
    return {variable: render_value(settings[name]) for name, variable in settings.told_env().items()}


def server_labels(settings: Settings) -> dict[str, str]:
    """The container labels that say which server runs and what it is told (:data:`LABEL_SERVER_MODE`, ...)."""
    labels = {LABEL_SERVER_MODE: settings.server.server_mode}
    if settings.own_server:
        labels[LABEL_SERVER_ENV] = render_value(settings.server.server_env)
    return labels


def read_server_environment(
    env: Mapping[str, str], labels: Mapping[str, str], base: Settings | None = None
) -> tuple[Settings, dict[str, str]]:
    """The settings a container's server is told, from its environment and its :func:`server_labels`.

    Returns the settings over ``base`` and ``{setting name: text}`` of what was read. With no labels,
    the container is taken for the reference server when it carries ``STICKYWS_*`` variables (what the
    constructs render), and for your own server told nothing otherwise. Your own server's settings are
    read from the variables its ``server_env`` names; the reference server's from ``STICKYWS_*``.
    """
    base = base or Settings()
    mode = labels.get(LABEL_SERVER_MODE) or ("reference" if any(name.startswith(ENV_PREFIX) for name in env) else "own")
    settings = base.with_overrides({"server_mode": mode, "server_env": labels.get(LABEL_SERVER_ENV, "")})
    if settings.own_server:
        read = {name: env[variable] for name, variable in settings.told_env().items() if variable in env}
    else:
        read = {name: env[env_name(name)] for name in FIELDS if env_name(name) in env}
    return settings.with_overrides(read), read


def from_env(env: Mapping[str, str], base: Settings | None = None) -> Settings:
    """Settings from ``STICKYWS_*`` variables over ``base`` (defaults); other variables are ignored."""
    overrides = {name: env[env_name(name)] for name in FIELDS if env_name(name) in env}
    return (base or Settings()).with_overrides(overrides)


def load_file(path: str | Path) -> dict[str, Any]:
    """Flat ``{name: value}`` overrides from a JSON or TOML file (by extension).

    Unknown names raise :class:`UnknownSettingError`; an unreadable file raises
    :class:`SettingsError` naming the file.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data: Any = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (OSError, ValueError) as exc:
        raise SettingsError(
            [
                Finding(
                    rule="settings-file",
                    severity=Severity.ERROR,
                    message=f"cannot read settings file {path}: {exc}",
                    fix="pass a JSON or TOML file of flat setting names (see README.md)",
                    settings=(CONTEXT_SETTINGS_FILE,),
                )
            ]
        ) from None
    if not isinstance(data, dict):
        raise SettingValueError(CONTEXT_SETTINGS_FILE, str(path), "a JSON object or TOML table")
    Settings().with_overrides(data)  # raises on unknown names and unparsable values
    return data


def resolve(context: Mapping[str, Any], base: Settings | None = None) -> Settings:
    """Settings from CDK-style context: a ``settings_file`` first, then flat names on top.

    Context keys that are not setting names are ignored (CDK context holds feature flags and
    lookups too); the settings file is strict.
    """
    settings = base or Settings()
    file_name = context.get(CONTEXT_SETTINGS_FILE)
    if file_name:
        settings = settings.with_overrides(load_file(str(file_name)))
    flat = {name: value for name, value in context.items() if name in FIELDS and value is not None}
    return settings.with_overrides(flat)
