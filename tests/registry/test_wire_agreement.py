"""The push and publication bodies have one Python definition (stickyws.registry.wire) and one Lua copy each
(scripts/push.lua, scripts/publish_topic.lua): on a real redis-server the scripts announce the very text the
Python builders make of the same fields."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from stickyws import keys
from stickyws.registry.redis_registry import RedisRegistry
from stickyws.registry.wire import parse_publication, parse_push, publication_body, push_body
from tests.server.helpers import run

pytestmark = pytest.mark.redis


@pytest.fixture
def pubsub(redis_url: str) -> Iterator[redis.client.PubSub]:
    """A plain pub/sub connection of the registry, to read what the scripts announce."""
    client = redis.Redis.from_url(redis_url)
    subscription = client.pubsub(ignore_subscribe_messages=True)
    yield subscription
    subscription.close()
    client.close()


def _next_text(subscription: redis.client.PubSub) -> str:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        message = subscription.get_message(timeout=0.5)
        if message is not None:
            return str(message["data"].decode())
    raise AssertionError("nothing was announced within 5 s")


@pytest.mark.parametrize("user_id", ["alice", 'quote"and\\backslash'])
def test_the_push_script_announces_the_body_push_body_builds(
    user_id: str, redis_url: str, pubsub: redis.client.PubSub
) -> None:
    """A push to a user with a route is announced on its server's channel as push_body of the same fields."""
    pubsub.subscribe(keys.push_channel("srv"))
    payload = '{"text":"hé","n":[1,2.50]}'

    async def go() -> None:
        reg = RedisRegistry(redis_url, ack_wait_replicas=0)
        try:
            await reg.handshake(user_id=user_id, server_id="srv", session_id="S1", resume=False,
                                reject_live_owner=False, routing_ttl_s=60, session_ttl_s=60)  # fmt: skip
            assert (await reg.push(user_id=user_id, payload=payload)).status == "sent"
        finally:
            await reg.close()

    run(go())
    text = _next_text(pubsub)
    push = parse_push(text)
    assert (push.user_id, push.session_id, push.seq, push.data) == (user_id, "S1", 1, payload)
    assert abs(push.ts_ms - time.time() * 1000) < 10_000
    assert push_body(push) == text


def test_the_publish_script_announces_the_body_publication_body_builds(
    redis_url: str, pubsub: redis.client.PubSub
) -> None:
    """A topic publication is announced on the topic's channel as publication_body of the same fields."""
    topic = 'news,"d":x'
    pubsub.subscribe(keys.topic_channel(topic))
    payload = '{"eur":1.08}'

    async def go() -> None:
        reg = RedisRegistry(redis_url)
        try:
            await reg.publish_topic(topic=topic, payload=payload, retention_count=10, retention_s=60,
                                    epoch_if_new="ep1")  # fmt: skip
        finally:
            await reg.close()

    run(go())
    text = _next_text(pubsub)
    publication = parse_publication(text)
    assert (publication.topic, publication.offset, publication.epoch, publication.data) == (topic, 1, "ep1", payload)
    assert publication_body(publication) == text
