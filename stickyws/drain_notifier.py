"""The drain-notifier Lambda: turn an ECS "Task State Change" into a drain notice on the registry.

ECS stops a service task in this order: desired status STOPPED and deregistration from the target
group, then the load balancer drains the target for up to the deregistration delay, and only then
SIGTERM. A server that waits for SIGTERM has already lost its sockets. EventBridge delivers the
task state change with ``desiredStatus: STOPPED`` at the first step; this handler publishes a
:class:`stickyws.keys.DrainNotice` for that task so the server starts migrating its clients while
the load balancer still carries their connections.

For each event the handler, in ONE round trip (a MULTI/EXEC pipeline):

1. ``SET ws:drain:{taskId} <notice JSON> EX DRAIN_NOTICE_TTL_S`` (a server that subscribes late
   still finds it), and
2. ``PUBLISH ws:drain:{taskId} <notice JSON>`` (live servers act at once).

Events that are not a STOPPED desired status for a task are ignored and summarised in the return
value. A Redis error raises :class:`DrainNotifyError`, so the asynchronous invocation fails, Lambda
retries it and finally sends the event to the dead-letter queue.

The function authenticates to the registry as ``REDIS_AUTH`` says (:mod:`stickyws.registry_auth`:
an IAM auth token signed with the function's role, or the password from Secrets Manager).

The Lambda bundle holds only ``stickyws/__init__.py``, ``stickyws/keys.py``,
``stickyws/registry_auth.py``, this module and redis-py (see ``constructs_lib/bundling.py``; botocore
comes with the Lambda runtime), so this module imports nothing else from stickyws.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis

from stickyws.keys import DRAIN_NOTICE_TTL_S, DrainNotice, drain_key
from stickyws.registry_auth import RegistryAuthError, credential_provider_from_env

#: Environment variable with the registry URL. Same name as ``stickyws.settings.ENV_REDIS_URL``
#: (the bundle does not carry the settings package; tests/drain_notifier pins the equality).
REDIS_URL_ENV = "REDIS_URL"
#: ``DrainNotice.source`` of every notice this handler issues.
SOURCE = "ecs-task-state-change"
#: Seconds to connect to / wait for the registry before the invocation fails (Lambda then retries).
REDIS_TIMEOUT_S = 3.0

ECS_EVENT_SOURCE = "aws.ecs"
TASK_STATE_CHANGE = "ECS Task State Change"
STOPPED = "STOPPED"


class DrainNotifyError(RuntimeError):
    """The drain notice could not be written to the registry; the message says where and why."""


# Reused across invocations of a warm Lambda container: created on first use, rebuilt only when
# REDIS_URL or the auth environment changes (tests point it at a fresh redis-server).
_client: redis.Redis | redis.RedisCluster | None = None
_client_key: tuple[str, ...] | None = None


def parse_event(event: Any) -> DrainNotice | str:
    """The drain notice ``event`` asks for, or a short reason why it asks for none.

    Pure: no I/O. ``event`` is an EventBridge event as Lambda receives it. The task id is the last
    path segment of ``detail.taskArn`` (both the long ``task/cluster/id`` and the old ``task/id``
    ARN formats); the reason is ``detail.stoppedReason`` (or ``detail.stopCode``) when present.
    """
    if not isinstance(event, Mapping):
        return f"event is a {type(event).__name__}, not an object"
    if event.get("source") != ECS_EVENT_SOURCE or event.get("detail-type") != TASK_STATE_CHANGE:
        source, kind = event.get("source"), event.get("detail-type")
        return f"not an ECS task state change (source={source!r}, detail-type={kind!r})"
    detail = event.get("detail")
    if not isinstance(detail, Mapping):
        return "event has no detail object"
    desired = detail.get("desiredStatus")
    if desired != STOPPED:
        return f"desiredStatus is {desired!r}, not {STOPPED!r}"
    task_arn = detail.get("taskArn")
    if not isinstance(task_arn, str) or not task_arn.startswith("arn:") or ":task/" not in task_arn:
        return f"detail.taskArn {task_arn!r} is not an ECS task ARN"
    task_id = task_arn.rsplit("/", 1)[-1]
    if not task_id:
        return f"detail.taskArn {task_arn!r} has no task id"
    reason = detail.get("stoppedReason") or detail.get("stopCode") or ""
    return DrainNotice(server_id=task_id, source=SOURCE, reason=str(reason))


def publish(client: redis.Redis | redis.RedisCluster, notice: DrainNotice) -> int:
    """Store and publish ``notice``; returns the subscriber count.

    On one primary: one MULTI/EXEC round trip. On a Redis Cluster: ``SET`` (in the key's slot) then
    ``PUBLISH`` (which the cluster forwards to every node), in that order, so a server that
    subscribes late still finds the stored notice. Raises :class:`redis.RedisError` as redis-py
    does; :func:`handler` wraps it.
    """
    key = drain_key(notice.server_id)
    body = notice.to_json()
    if isinstance(client, redis.RedisCluster):
        client.set(key, body, ex=DRAIN_NOTICE_TTL_S)
        return int(client.publish(key, body))
    pipe = client.pipeline(transaction=True)
    pipe.set(key, body, ex=DRAIN_NOTICE_TTL_S)
    pipe.publish(key, body)
    _, receivers = pipe.execute()
    return int(receivers)


def handler(event: Any, context: Any = None) -> dict[str, Any]:
    """Lambda entry point: publish a drain notice for a stopping task, ignore every other event.

    Returns ``{"status": "published", "serverId", "key", "subscribers"}`` or
    ``{"status": "ignored", "reason"}``. Raises :class:`DrainNotifyError` when ``REDIS_URL`` is
    unset or the registry cannot be reached, so the event is retried and then dead-lettered.
    """
    parsed = parse_event(event)
    if isinstance(parsed, str):
        return {"status": "ignored", "reason": parsed}
    url = os.environ.get(REDIS_URL_ENV, "")
    if not url:
        raise DrainNotifyError(
            f"{REDIS_URL_ENV} is not set: give the function the registry URL "
            "(rediss://host:port), as the DrainNotifier construct does"
        )
    try:
        subscribers = publish(_redis(url), parsed)
    except RegistryAuthError as exc:
        raise DrainNotifyError(f"cannot authenticate to the registry at {redact(url)}: {exc}") from None
    except redis.AuthenticationError as exc:
        raise DrainNotifyError(
            f"the registry at {redact(url)} refused this function's credentials ({exc}): check that the "
            "function's role may elasticache:Connect to the cache and its user (ConnectionRegistry.grant_connect) "
            "and that the user is in the cache's user group; the event will be retried"
        ) from exc
    except redis.RedisError as exc:
        raise DrainNotifyError(
            f"could not publish the drain notice for task {parsed.server_id} to {redact(url)}: "
            f"{type(exc).__name__}: {exc}. Check that the registry is up and that its security group "
            "admits this function; the event will be retried and then sent to the dead-letter queue"
        ) from exc
    return {
        "status": "published",
        "serverId": parsed.server_id,
        "key": drain_key(parsed.server_id),
        "subscribers": subscribers,
    }


def redact(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


#: Environment variables that decide the client (a change builds a new one).
_CLIENT_ENV = (
    REDIS_URL_ENV,
    "REDIS_AUTH",
    "REDIS_USER",
    "REDIS_IAM_CACHE_NAME",
    "REDIS_IAM_SERVERLESS",
    "REDIS_PASSWORD",
    "REDIS_PASSWORD_SECRET_ARN",
)


def _redis(url: str) -> redis.Redis | redis.RedisCluster:
    """The module-level client for ``url`` and the auth environment, created on first use and then reused.

    Raises :class:`RegistryAuthError` when the auth environment is incomplete.
    """
    global _client, _client_key
    key = (url, *(os.environ.get(name, "") for name in _CLIENT_ENV[1:]))
    if _client is None or _client_key != key:
        if _client is not None:
            _client.close()
            _client, _client_key = None, None
        provider = credential_provider_from_env(os.environ)
        client: redis.Redis | redis.RedisCluster = redis.Redis.from_url(
            url,
            socket_connect_timeout=REDIS_TIMEOUT_S,
            socket_timeout=REDIS_TIMEOUT_S,
            health_check_interval=30,
            credential_provider=provider,
        )
        # A cluster (e.g. an ElastiCache configuration endpoint) is asked once, then used as one.
        if int(client.info("cluster").get("cluster_enabled", 0)) == 1:
            client.close()
            client = redis.RedisCluster.from_url(
                url,
                socket_connect_timeout=REDIS_TIMEOUT_S,
                socket_timeout=REDIS_TIMEOUT_S,
                credential_provider=provider,
            )
        _client, _client_key = client, key
    return _client
