"""The drain-notifier Lambda handler against a real redis-server."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from stickyws import drain_notifier
from stickyws.keys import DRAIN_NOTICE_TTL_S, DrainNotice, drain_key
from stickyws.localproc import RedisServer
from stickyws.settings import ENV_REDIS_URL

pytestmark = pytest.mark.redis

TASK_ID = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
TASK_ARN = f"arn:aws:ecs:eu-west-1:123456789012:task/sticky-cluster/{TASK_ID}"


def ecs_event(*, desired: str = "STOPPED", last: str = "DEACTIVATING", **detail: Any) -> dict[str, Any]:
    """An EventBridge "ECS Task State Change" event as Lambda receives it."""
    body: dict[str, Any] = {
        "clusterArn": "arn:aws:ecs:eu-west-1:123456789012:cluster/sticky-cluster",
        "taskArn": TASK_ARN,
        "group": "service:sticky-service",
        "desiredStatus": desired,
        "lastStatus": last,
        "stoppedReason": "Scaling activity initiated by (deployment ecs-svc/123)",
    }
    body.update(detail)
    return {
        "version": "0",
        "id": "5e1b1a6a-0000-4000-8000-000000000000",
        "detail-type": "ECS Task State Change",
        "source": "aws.ecs",
        "account": "123456789012",
        "region": "eu-west-1",
        "resources": [TASK_ARN],
        "detail": body,
    }


@pytest.fixture
def client(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[redis.Redis]:
    """A client on the flushed shared redis-server, with REDIS_URL pointing the handler at it."""
    monkeypatch.setenv(ENV_REDIS_URL, redis_url)
    conn = redis.Redis.from_url(redis_url, decode_responses=True)
    yield conn
    conn.close()


def next_message(pubsub: Any, timeout_s: float) -> dict[str, Any] | None:
    """The next pub/sub message (not a subscribe confirmation), or None after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        msg = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.05)
        if msg is not None:
            return dict(msg)
    return None


def test_env_name_matches_settings() -> None:
    """The handler reads the registry URL from the same variable name the settings model renders."""
    assert drain_notifier.REDIS_URL_ENV == ENV_REDIS_URL


def test_stopped_event_publishes_and_stores_notice(client: redis.Redis) -> None:
    """A STOPPED task event publishes the notice to a subscriber and leaves the key with its TTL."""
    pubsub = client.pubsub()
    pubsub.subscribe(drain_key(TASK_ID))
    assert next_message(pubsub, 0.2) is None  # consumes the subscribe confirmation only

    result = drain_notifier.handler(ecs_event(), None)

    assert result == {"status": "published", "serverId": TASK_ID, "key": f"ws:drain:{TASK_ID}", "subscribers": 1}
    msg = next_message(pubsub, 2.0)
    assert msg is not None
    assert msg["channel"] == f"ws:drain:{TASK_ID}"
    notice = DrainNotice.from_json(msg["data"])
    assert notice.server_id == TASK_ID
    assert notice.source == "ecs-task-state-change"
    assert notice.reason == "Scaling activity initiated by (deployment ecs-svc/123)"
    assert notice.issued_at_ms > 0
    assert client.get(drain_key(TASK_ID)) == msg["data"]
    ttl = client.ttl(drain_key(TASK_ID))
    assert DRAIN_NOTICE_TTL_S - 5 <= ttl <= DRAIN_NOTICE_TTL_S
    pubsub.close()


def test_store_and_publish_are_one_transaction(client: redis.Redis) -> None:
    """SET and PUBLISH reach Redis as one MULTI/EXEC block (one round trip)."""
    before = client.info("commandstats")
    drain_notifier.handler(ecs_event(), None)
    after = client.info("commandstats")

    def calls(stats: dict[str, Any], name: str) -> int:
        return int(stats.get(f"cmdstat_{name}", {}).get("calls", 0))

    assert calls(after, "multi") - calls(before, "multi") == 1
    assert calls(after, "exec") - calls(before, "exec") == 1
    assert calls(after, "set") - calls(before, "set") == 1
    assert calls(after, "publish") - calls(before, "publish") == 1


def test_running_event_does_nothing(client: redis.Redis) -> None:
    """A task whose desired status is RUNNING gets no notice: no key, no message."""
    pubsub = client.pubsub()
    pubsub.subscribe(drain_key(TASK_ID))
    next_message(pubsub, 0.2)

    result = drain_notifier.handler(ecs_event(desired="RUNNING", last="PENDING"), None)

    assert result == {"status": "ignored", "reason": "desiredStatus is 'RUNNING', not 'STOPPED'"}
    assert next_message(pubsub, 0.3) is None
    assert client.keys("ws:drain:*") == []
    pubsub.close()


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ("not-an-event", "event is a str, not an object"),
        ({"source": "aws.ec2", "detail-type": "EC2 Instance State-change Notification", "detail": {}},
         "not an ECS task state change (source='aws.ec2', detail-type='EC2 Instance State-change Notification')"),
        ({"source": "aws.ecs", "detail-type": "ECS Task State Change"}, "event has no detail object"),
        (ecs_event(taskArn="task-without-arn"), "detail.taskArn 'task-without-arn' is not an ECS task ARN"),
        (ecs_event(taskArn=None), "detail.taskArn None is not an ECS task ARN"),
        (ecs_event(taskArn="arn:aws:ecs:eu-west-1:1:task/c/"),
         "detail.taskArn 'arn:aws:ecs:eu-west-1:1:task/c/' has no task id"),
    ],
)  # fmt: skip
def test_malformed_event_is_ignored(client: redis.Redis, event: Any, reason: str) -> None:
    """An event that is not a usable ECS task state change is ignored with a summary naming why."""
    assert drain_notifier.handler(event, None) == {"status": "ignored", "reason": reason}
    assert client.keys("*") == []


def test_old_arn_format_and_missing_reason() -> None:
    """The task id is the last ARN segment in the old format too; a missing reason falls back to stopCode."""
    event = ecs_event(taskArn=f"arn:aws:ecs:eu-west-1:123456789012:task/{TASK_ID}", stoppedReason=None)
    event["detail"]["stopCode"] = "ServiceSchedulerInitiated"
    notice = drain_notifier.parse_event(event)
    assert notice == DrainNotice(server_id=TASK_ID, source="ecs-task-state-change", reason="ServiceSchedulerInitiated")


def test_client_is_reused_across_invocations(client: redis.Redis) -> None:
    """Two invocations with the same REDIS_URL share one module-level client."""
    drain_notifier.handler(ecs_event(), None)
    first = drain_notifier._client
    drain_notifier.handler(ecs_event(taskArn=TASK_ARN + "0"), None)
    assert first is not None
    assert drain_notifier._client is first
    assert client.exists(drain_key(TASK_ID), drain_key(TASK_ID + "0")) == 2


def test_redis_down_raises_clear_error(make_redis: Callable[[], RedisServer], monkeypatch: pytest.MonkeyPatch) -> None:
    """With the registry down the handler raises an error naming the task, the URL and what to check."""
    server = make_redis()
    monkeypatch.setenv(ENV_REDIS_URL, server.url)
    server.stop()

    started = time.monotonic()
    with pytest.raises(drain_notifier.DrainNotifyError) as info:
        drain_notifier.handler(ecs_event(), None)
    elapsed_s = time.monotonic() - started

    message = str(info.value)
    assert f"could not publish the drain notice for task {TASK_ID} to {server.url}" in message
    assert "ConnectionError" in message
    assert "dead-letter queue" in message
    assert isinstance(info.value.__cause__, redis.ConnectionError)
    assert elapsed_s < 15


def test_missing_redis_url_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without REDIS_URL a STOPPED event fails with a message naming the variable to set."""
    monkeypatch.delenv(ENV_REDIS_URL, raising=False)
    with pytest.raises(drain_notifier.DrainNotifyError, match="REDIS_URL is not set"):
        drain_notifier.handler(ecs_event(), None)


def test_redact_hides_password() -> None:
    """Error messages never carry the registry password."""
    assert (
        drain_notifier.redact("rediss://user:s3cret@cache.example:6380/0") == "rediss://user:***@cache.example:6380/0"
    )
    assert drain_notifier.redact("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_notice_json_roundtrip_is_the_stored_value(client: redis.Redis) -> None:
    """The stored key parses back as a drain notice for the stopped task."""
    drain_notifier.handler(ecs_event(), None)
    stored = client.get(drain_key(TASK_ID))
    assert isinstance(stored, str)
    assert json.loads(stored)["type"] == "drain"
    assert DrainNotice.from_json(stored).server_id == TASK_ID


def test_on_a_cluster_the_notice_is_stored_in_its_slot_and_reaches_a_server_on_another_node(
    cluster_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Against a Redis Cluster the handler stores the notice where the cluster keeps that key and publishes
    it so that a subscriber on a different node receives it."""
    monkeypatch.setenv(ENV_REDIS_URL, cluster_url)
    monkeypatch.setattr(drain_notifier, "_client", None)
    monkeypatch.setattr(drain_notifier, "_client_key", None)
    cluster = redis.RedisCluster.from_url(cluster_url, decode_responses=True)
    owner = cluster.get_node_from_key(drain_key(TASK_ID))
    other = next(n for n in cluster.get_primaries() if n.name != owner.name)
    listener = redis.Redis(host=other.host, port=other.port, decode_responses=True)
    pubsub = listener.pubsub()
    try:
        pubsub.subscribe(drain_key(TASK_ID))
        assert next_message(pubsub, 0.2) is None
        result = drain_notifier.handler(ecs_event(), None)
        assert isinstance(drain_notifier._client, redis.RedisCluster)
        assert result["status"] == "published"
        msg = next_message(pubsub, 2.0)
        assert msg is not None
        assert DrainNotice.from_json(msg["data"]).server_id == TASK_ID
        assert cluster.get(drain_key(TASK_ID)) == msg["data"]
        assert 0 < cluster.ttl(drain_key(TASK_ID)) <= DRAIN_NOTICE_TTL_S
    finally:
        pubsub.close()
        listener.close()
        cluster.close()
        if drain_notifier._client is not None:
            drain_notifier._client.close()
        drain_notifier._client = None
