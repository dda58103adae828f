"""The pub/sub bodies the registry carries, built and parsed in one place, and the typed events.

* :class:`UserPush` on ``keys.push_channel(server)`` (one primary) or ``keys.user_push_channel(user)`` (a
  cluster): ``{"u":user,"s":session,"q":seq,"ts":ms,"d":data}``;
* :class:`Publication` on ``keys.topic_channel(topic)``: ``{"t":topic,"o":offset,"e":epoch,"ts":ms,"d":data}``;
* ``DrainNotice`` on ``keys.drain_key(server)``: :meth:`stickyws.keys.DrainNotice.to_json`;
* :class:`Takeover` on ``keys.takeover_channel(server)``: ``{"userId":user,"by":server}``.

``d`` (the payload's JSON text) comes last and is carried as it was published, never parsed: a
parser cuts the head at the first ``,"d":`` (one inside a head string would have its quote
escaped). ``ts`` is epoch milliseconds when the registry assigned the message (0: unknown).

The registry's Redis scripts build the push and publication bodies in Lua (``scripts/push.lua``,
``scripts/publish_topic.lua``); ``tests/registry/test_wire_agreement.py`` checks that those and
:func:`push_body`/:func:`publication_body` are the same text.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stickyws import json_codec, keys
from stickyws.keys import DrainNotice

log = logging.getLogger("stickyws.server")

__all__ = [
    "BusEvent",
    "Decoder",
    "DrainNotice",
    "Publication",
    "Takeover",
    "UserPush",
    "decode",
    "decoder_for",
    "parse_drain_notice",
    "parse_publication",
    "parse_push",
    "parse_takeover",
    "publication_body",
    "push_body",
    "server_decoders",
    "takeover_body",
]


@dataclass(frozen=True)
class Publication:
    """One publication of a topic: ``data`` is its payload's compact JSON text."""

    topic: str
    offset: int
    epoch: str
    data: str
    #: Epoch milliseconds when the registry assigned it (0: unknown), for the publish-to-send lag.
    ts_ms: int = 0


@dataclass(frozen=True)
class UserPush:
    """A push channel body: message ``seq`` of ``user_id``'s session ``session_id``; ``data`` is JSON text."""

    user_id: str
    session_id: str
    seq: int
    data: str
    ts_ms: int = 0


@dataclass(frozen=True)
class Takeover:
    """A request to the server holding ``user_id``: close that connection, server ``by`` holds the user now."""

    user_id: str
    by: str


#: What :meth:`stickyws.registry.interfaces.Bus.listen` hands over, one per message.
BusEvent = UserPush | Publication | DrainNotice | Takeover
#: Turns a body into its event (raises ``ValueError`` for anything else).
Decoder = Callable[[str], BusEvent]


def _head(fields: dict[str, Any], data: str) -> str:
    return json.dumps(fields, separators=(",", ":"))[:-1] + ',"d":' + data + "}"


def push_body(push: UserPush) -> str:
    """The pub/sub body announcing ``push`` to the server that holds its user."""
    return _head({"u": push.user_id, "s": push.session_id, "q": push.seq, "ts": push.ts_ms}, push.data)


def publication_body(publication: Publication) -> str:
    """The pub/sub body announcing ``publication`` on its topic channel."""
    p = publication
    return _head({"t": p.topic, "o": p.offset, "e": p.epoch, "ts": p.ts_ms}, p.data)


def takeover_body(user_id: str, by: str) -> str:
    """The pub/sub body of a :class:`Takeover` request."""
    return json_codec.dumps({"userId": user_id, "by": by})


def _split_body(text: str) -> tuple[dict[str, Any], str]:
    """A pub/sub body's head fields and its ``d`` payload text, without parsing the payload."""
    cut = text.find(',"d":')
    if cut < 0 or not text.endswith("}"):
        raise ValueError("not a stickyws pub/sub body")
    head = json_codec.loads(text[:cut] + "}")
    data = text[cut + 5 : -1]
    if not isinstance(head, dict) or not data:
        raise ValueError("not a stickyws pub/sub body")
    return head, data


def parse_publication(text: str) -> Publication:
    """A topic channel body as a :class:`Publication`; raises ``ValueError`` for anything else."""
    try:
        head, data = _split_body(text)
        return Publication(str(head["t"]), int(head["o"]), str(head["e"]), data, int(head.get("ts", 0)))
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"malformed publication: {exc}") from None


def parse_push(text: str) -> UserPush:
    """A push channel body as a :class:`UserPush`; raises ``ValueError`` for anything else."""
    try:
        head, data = _split_body(text)
        return UserPush(str(head["u"]), str(head["s"]), int(head["q"]), data, int(head.get("ts", 0)))
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"malformed push: {exc}") from None


def parse_takeover(text: str) -> Takeover:
    """A takeover channel body as a :class:`Takeover`; raises ``ValueError`` for anything else."""
    try:
        body = json.loads(text)
        return Takeover(str(body["userId"]), str(body["by"]))
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"malformed takeover request: {exc}") from None


def parse_drain_notice(text: str) -> DrainNotice:
    """A drain channel body as a :class:`~stickyws.keys.DrainNotice`; raises ``ValueError`` for anything else."""
    return DrainNotice.from_json(text)


def server_decoders(server_id: str) -> dict[str, Decoder]:
    """The channels every server listens on, each with the decoder of its bodies: its drain notices,
    takeover requests and pushes (on one primary)."""
    return {
        keys.drain_key(server_id): parse_drain_notice,
        keys.takeover_channel(server_id): parse_takeover,
        keys.push_channel(server_id): parse_push,
    }


def decoder_for(channel: str) -> Decoder | None:
    """The decoder of a channel a server adds for its users and topics (a user's sharded push channel, a
    topic channel); ``None`` for any other."""
    if keys.is_topic_channel(channel):
        return parse_publication
    if keys.is_user_push_channel(channel):
        return parse_push
    return None


def decode(decoder: Decoder, channel: str, text: str) -> BusEvent | None:
    """``decoder(text)``, or ``None`` (logged) when ``text`` is not that channel's body."""
    try:
        return decoder(text)
    except ValueError:
        log.warning("ignored a malformed message on %s", channel)
        return None
