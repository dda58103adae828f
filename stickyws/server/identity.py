"""Which server this is: ``STICKYWS_SERVER_ID``, else the ECS task id, else ``hostname-pid``; and which
revision it runs: the ``revision`` setting, else the task definition's ``family:revision``, else none.

On ECS the id is the task id (the last part of the task ARN from the task metadata endpoint v4),
so the drain notifier, which sees ECS task events, can address this server. The revision comes from
the same endpoint (``Family`` and ``Revision``): every task of one deployment shares it.
"""

from __future__ import annotations

import json
import os
import socket
import urllib.request
from collections.abc import Mapping
from typing import Any

from stickyws.settings import ENV_SERVER_ID

#: Set by the ECS agent in every container.
ENV_ECS_METADATA = "ECS_CONTAINER_METADATA_URI_V4"
METADATA_TIMEOUT_S = 2.0


def fetch_task_metadata(base_url: str, timeout_s: float = METADATA_TIMEOUT_S) -> dict[str, Any]:
    """``GET {base}/task`` of the ECS task metadata endpoint v4 (blocking; raises ``OSError``/``ValueError``)."""
    with urllib.request.urlopen(base_url.rstrip("/") + "/task", timeout=timeout_s) as resp:
        body = json.loads(resp.read())
    if not isinstance(body, dict):
        raise ValueError("task metadata is not a JSON object")
    return body


def task_id_from_arn(arn: str) -> str:
    """``arn:aws:ecs:region:acct:task/cluster/abc123`` -> ``abc123``."""
    return arn.rsplit("/", 1)[-1]


def task_ip(metadata: Mapping[str, Any]) -> str | None:
    """The task's first private IPv4 address from task metadata (awsvpc networking), if any."""
    for container in metadata.get("Containers", []) or []:
        for net in container.get("Networks", []) or []:
            for ip in net.get("IPv4Addresses", []) or []:
                return str(ip)
    return None


def resolve_server_id(env: Mapping[str, str]) -> str:
    """The server id (see the module docstring); never raises."""
    explicit = env.get(ENV_SERVER_ID, "").strip()
    if explicit:
        return explicit
    base = env.get(ENV_ECS_METADATA)
    if base:
        try:
            arn = fetch_task_metadata(base).get("TaskARN")
            if isinstance(arn, str) and arn:
                return task_id_from_arn(arn)
        except (OSError, ValueError):
            pass
    return f"{socket.gethostname()}-{os.getpid()}"


def revision_from_metadata(metadata: Mapping[str, Any]) -> str:
    """``Family:Revision`` of the task definition in task metadata, or "" when either is missing."""
    family, revision = metadata.get("Family"), metadata.get("Revision")
    if not family or revision in (None, ""):
        return ""
    return f"{family}:{revision}"


def resolve_revision(configured: str, env: Mapping[str, str]) -> str:
    """The server's revision: ``configured`` (the ``revision`` setting) when not empty, else the ECS task
    definition's ``family:revision`` when the task metadata endpoint is set and answers, else ""; never raises."""
    if configured.strip():
        return configured.strip()
    base = env.get(ENV_ECS_METADATA)
    if not base:
        return ""
    try:
        return revision_from_metadata(fetch_task_metadata(base))
    except (OSError, ValueError):
        return ""
