"""The key schema: one hash slot per user and per topic, and no id can choose its slot."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from stickyws import keys

IDS = ["alice", "a:{b}*", "{x}", "}{", "100%", "ü-ser", "a b", "", "x" * 300, "%7B"]


@pytest.mark.parametrize("user", IDS)
def test_every_key_of_a_user_is_in_one_slot_named_by_the_whole_id(user: str) -> None:
    """Route and session of a user share the slot of the user's own tag, whatever braces the id holds."""
    slots = {key_slot(keys.user_key(user).encode()), key_slot(keys.session_key(user).encode())}
    assert slots == {key_slot(f"{{u:{keys.encode_id(user)}}}".encode())}
    assert "{" not in keys.encode_id(user)
    assert "}" not in keys.encode_id(user)


@pytest.mark.parametrize("topic", IDS)
def test_every_key_of_a_topic_is_in_one_slot(topic: str) -> None:
    """Meta and log of a topic share one slot (its channel has the same tag)."""
    assert key_slot(keys.topic_meta_key(topic).encode()) == key_slot(keys.topic_log_key(topic).encode())


def test_encoding_is_injective_and_braces_cannot_pick_a_slot() -> None:
    """Distinct ids give distinct keys; an id shaped like a hash tag does not land in that tag's slot."""
    encoded = [keys.encode_id(i) for i in IDS]
    assert len(set(encoded)) == len(IDS)
    assert keys.encode_id("a:{b}*") == "a%3A%7Bb%7D*"
    assert keys.user_key("a:{b}*") == "ws:{u:a%3A%7Bb%7D*}:route"
    assert key_slot(keys.user_key("a:{b}*").encode()) != key_slot(b"{b}")
