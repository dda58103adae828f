"""Client messages until the server has them: ids, acknowledgements, resend after resume. Pure.

Every application message gets the next id (1, 2, ...: strictly increasing for the whole life of
the client, as ``stickyws.v1`` requires per session) and stays in the outbox until it is
*confirmed*, either by an ``ack`` or by a ``connected`` frame whose ``lastClientId`` covers it
(the server handled it but the ack was lost with the connection). After every (re)connect the
client transmits the pending messages above ``lastClientId`` again, in id order, before anything
new: the server drops ids it has already handled, so nothing is lost and nothing is handled twice.

The counters let a test prove exactly that: ``confirmations[id]`` must be 1 for every id.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from stickyws.protocol import ClientMessage


@dataclass
class Pending:
    """A message not confirmed yet; ``transmissions`` counts the connections it was written to."""

    message: ClientMessage
    transmissions: int = 0


@dataclass
class Outbox:
    """See the module doc."""

    next_id: int = 1
    pending: dict[int, Pending] = field(default_factory=dict)
    #: How many times each id was confirmed as newly handled (must end at exactly 1 for every id).
    confirmations: Counter[int] = field(default_factory=Counter)
    #: Acks flagged ``duplicate``: the server saw the id again and did not handle it twice.
    duplicate_acks: int = 0
    #: Messages written to a second (or later) connection.
    resent: int = 0
    #: Ids confirmed by a resume's ``lastClientId`` instead of an ack.
    confirmed_by_resume: int = 0

    def add(self, data: Any) -> ClientMessage:
        """Queue ``data`` as the next ``send`` message and return it (not transmitted yet)."""
        msg = ClientMessage("send", self.next_id, data=data)
        self.pending[msg.id] = Pending(msg)
        self.next_id += 1
        return msg

    def add_control(self, kind: str, topic: str, position: tuple[int, str] | None = None) -> ClientMessage:
        """Queue a ``subscribe``/``unsubscribe`` for ``topic`` (a subscribe may carry the ``(offset, epoch)``
        to recover from); acknowledged like any message."""
        offset, epoch = position if position is not None else (None, "")
        msg = ClientMessage(kind, self.next_id, topic=topic, offset=offset, epoch=epoch)
        self.pending[msg.id] = Pending(msg)
        self.next_id += 1
        return msg

    def to_transmit(self, after_id: int) -> list[ClientMessage]:
        """Pending messages with an id above ``after_id``, in id order."""
        return [p.message for i, p in sorted(self.pending.items()) if i > after_id]

    def transmitted(self, msg_id: int) -> None:
        """Record that ``msg_id`` was written to the current connection."""
        item = self.pending.get(msg_id)
        if item is None:
            return
        item.transmissions += 1
        if item.transmissions > 1:
            self.resent += 1

    def on_ack(self, msg_id: int, *, duplicate: bool = False) -> bool:
        """Apply an ``ack``; True when it confirmed a pending message.

        A duplicate ack only counts (the server had handled the id earlier, on a connection whose
        ack was lost); a non-duplicate ack for an id already confirmed is recorded as a second
        confirmation, which is exactly the defect the counters exist to catch.
        """
        if duplicate:
            self.duplicate_acks += 1
            return self.pending.pop(msg_id, None) is not None
        self.confirmations[msg_id] += 1
        return self.pending.pop(msg_id, None) is not None

    def on_connected(self, last_client_id: int, *, resumed: bool) -> list[ClientMessage]:
        """Apply a ``connected`` frame; returns what to transmit on the new connection, in order.

        With ``resumed``, pending ids up to ``last_client_id`` were handled: they are confirmed.
        A fresh session (resume refused or first connect) handled none of them: all are resent.
        """
        if resumed:
            for msg_id in [i for i in self.pending if i <= last_client_id]:
                del self.pending[msg_id]
                self.confirmations[msg_id] += 1
                self.confirmed_by_resume += 1
        return self.to_transmit(last_client_id if resumed else 0)

    @property
    def sent_count(self) -> int:
        """Messages queued so far."""
        return self.next_id - 1

    def unconfirmed(self) -> list[int]:
        """Ids still waiting for confirmation, in order."""
        return sorted(self.pending)
