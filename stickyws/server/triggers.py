"""Drain triggers besides the Redis notice (which the core watches itself) and SIGTERM (the adapter).

Earliest first, on AWS: the drain notice on ``ws:drain:{serverId}`` (core), then, behind
``drain_poll_target_health``, ``elbv2:DescribeTargetHealth`` reporting this task's IP as
``draining`` (:func:`watch_target_health`), then the task metadata endpoint's ``DesiredStatus ==
STOPPED`` (:func:`watch_task_metadata`, best effort: whether it flips before SIGTERM is not
documented), then SIGTERM.

Each watcher is a coroutine that runs until it fires ``on_drain(source, reason)`` once and returns,
or until cancelled. Blocking calls (boto3, urllib) run in a thread; polls are jittered (uniform
between 0.5x and 1.5x the interval) so many tasks do not hit an API in step.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Any

from stickyws.server.identity import fetch_task_metadata

log = logging.getLogger("stickyws.server")

#: Mean interval of task-metadata polls.
METADATA_POLL_INTERVAL_S = 5.0

DrainCallback = Callable[[str, str], None]


def jittered(interval_s: float, rng: random.Random) -> float:
    """``interval_s`` scaled by a uniform factor in [0.5, 1.5)."""
    return interval_s * (0.5 + rng.random())


async def watch_task_metadata(
    base_url: str, on_drain: DrainCallback, *, interval_s: float = METADATA_POLL_INTERVAL_S,
    rng: random.Random | None = None,
) -> None:  # fmt: skip
    """Poll ``{base_url}/task``; fire ``on_drain("task-metadata", ...)`` when ``DesiredStatus`` is STOPPED."""
    rng = rng or random.Random()
    while True:
        try:
            meta = await asyncio.to_thread(fetch_task_metadata, base_url)
        except (OSError, ValueError) as exc:
            log.debug("task metadata poll failed: %s", exc)
        else:
            if meta.get("DesiredStatus") == "STOPPED":
                on_drain("task-metadata", f"DesiredStatus=STOPPED (KnownStatus={meta.get('KnownStatus')})")
                return
        await asyncio.sleep(jittered(interval_s, rng))


#: Target states that mean "registered in the target group".
REGISTERED_STATES = frozenset({"initial", "healthy", "unhealthy", "unhealthy.draining", "unavailable"})


def target_health(client: Any, target_group_arn: str, target_id: str, port: int) -> tuple[str | None, str | None]:
    """``(State, Reason)`` of this target from DescribeTargetHealth; ``(None, None)`` if not listed (blocking)."""
    reply = client.describe_target_health(TargetGroupArn=target_group_arn, Targets=[{"Id": target_id, "Port": port}])
    for desc in reply.get("TargetHealthDescriptions", []):
        target = desc.get("Target", {})
        if target.get("Id") == target_id and int(target.get("Port", port)) == port:
            health = desc.get("TargetHealth", {})
            state, reason = health.get("State"), health.get("Reason")
            return (str(state) if state else None), (str(reason) if reason else None)
    return None, None


async def watch_target_health(
    client: Any, target_group_arn: str, target_id: str, port: int, on_drain: DrainCallback, *,
    interval_s: float, rng: random.Random | None = None,
) -> None:  # fmt: skip
    """Poll DescribeTargetHealth (jittered) for this task's target (its IP on Fargate).

    Fires ``on_drain("target-health", ...)`` when the target is ``draining``, or when a target seen
    registered before is now ``Target.NotRegistered`` (the draining state was missed between two
    polls: the deregistration delay is shorter than the poll interval). ``client`` is a boto3
    ``elbv2`` client (needs ``elasticloadbalancing:DescribeTargetHealth``); API errors are logged
    and retried at the next poll.
    """
    rng = rng or random.Random()
    seen_registered = False
    while True:
        await asyncio.sleep(jittered(interval_s, rng))
        try:
            state, reason = await asyncio.to_thread(target_health, client, target_group_arn, target_id, port)
        except Exception as exc:  # botocore raises many types; a failed poll must not end the watcher
            log.warning("DescribeTargetHealth failed: %s", exc)
            continue
        if state == "draining":
            on_drain("target-health", f"target {target_id}:{port} is draining")
            return
        if seen_registered and reason == "Target.NotRegistered":
            on_drain("target-health", f"target {target_id}:{port} was deregistered")
            return
        seen_registered = seen_registered or state in REGISTERED_STATES
