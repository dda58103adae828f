"""In-order, exactly-once delivery on one connection: pure cursors, no I/O.

A connection receives two ordered streams: its session's messages (``seq``: handler replies and
pushes to the user, numbered by the registry) and the publications of each topic it subscribes to
(``offset`` within an ``epoch``). They reach the server by different paths (a commit's reply, the
push channel, a topic channel, a recovery read) whose arrival order is not guaranteed, so each
stream goes through a cursor that

* passes an item on only when it is the next one (``sent + 1``),
* drops what was already sent (a duplicate: the same item by two paths),
* holds what comes early, and reports the missing range so the caller can read it from the
  registry (:meth:`SeqCursor.missing`), and
* is told when a range is gone for good (:meth:`SeqCursor.skip`), so a client hears of a gap once
  and delivery goes on.
"""

from __future__ import annotations

from dataclasses import dataclass

#: ``(seq, payload JSON text)``
Item = tuple[int, str]


class SeqCursor:
    """The session's message stream on one connection: ``sent`` is the highest seq written."""

    __slots__ = ("held", "sent")

    def __init__(self, sent: int = 0) -> None:
        self.sent = sent
        self.held: dict[int, str] | None = None

    def offer(self, seq: int, text: str) -> list[Item]:
        """Items to write now, in order (``[]`` for a duplicate or an early item, which is held)."""
        if seq <= self.sent:
            return []
        if seq != self.sent + 1:
            if self.held is None:
                self.held = {}
            self.held[seq] = text
            return []
        self.sent = seq
        if not self.held:
            return [(seq, text)]
        out = [(seq, text)]
        self._drain(out)
        return out

    def _drain(self, out: list[Item]) -> None:
        held = self.held
        while held and self.sent + 1 in held:
            self.sent += 1
            out.append((self.sent, held.pop(self.sent)))
        if held is not None:
            for seq in [s for s in held if s <= self.sent]:
                del held[seq]
            if not held:
                self.held = None

    def missing(self) -> tuple[int, int] | None:
        """``(first, last)`` seqs that must arrive before the held ones can go, or ``None``."""
        if not self.held:
            return None
        return self.sent + 1, min(self.held) - 1

    def skip(self, through: int) -> list[Item]:
        """Seqs up to ``through`` are gone: move past them; returns the held items now due."""
        out: list[Item] = []
        if through > self.sent:
            self.sent = through
        self._drain(out)
        return out

    @property
    def waiting(self) -> bool:
        """True while items are held behind a gap."""
        return bool(self.held)


@dataclass(slots=True)
class TopicCursor:
    """One topic's publications on one connection.

    ``offset``/``epoch``: the position written last (``epoch`` ``""`` with offset 0: the topic had no
    log when the connection subscribed). ``recovering`` holds live publications while a recovery
    read is in flight.
    """

    offset: int
    epoch: str
    recovering: bool = False
    held: dict[int, str] | None = None

    def offer(self, offset: int, epoch: str, data: str) -> tuple[list[Item], bool]:
        """``(items to write in order, epoch_changed)``; an early or recovering item is held.

        A publication of another epoch means the topic's history was lost and restarted: the
        cursor moves to offset 0 of the new epoch (``epoch_changed`` True: the caller tells the
        client its position is unrecoverable) and then takes the publication as usual.
        """
        changed = False
        if epoch != self.epoch:
            if self.epoch == "" and self.offset == 0:
                self.epoch = epoch
            else:
                changed = True
                self.epoch, self.offset, self.held = epoch, 0, None
        if offset <= self.offset:
            return [], changed
        if self.recovering or offset != self.offset + 1:
            if self.held is None:
                self.held = {}
            self.held[offset] = data
            return [], changed
        self.offset = offset
        out = [(offset, data)]
        self._drain(out)
        return out, changed

    def _drain(self, out: list[Item]) -> None:
        held = self.held
        while held and self.offset + 1 in held:
            self.offset += 1
            out.append((self.offset, held.pop(self.offset)))
        if held is not None:
            for offset in [o for o in held if o <= self.offset]:
                del held[offset]
            if not held:
                self.held = None

    def missing(self) -> tuple[int, int] | None:
        """``(first, last)`` offsets missing before the held ones, or ``None``."""
        if not self.held or self.recovering:
            return None
        return self.offset + 1, min(self.held) - 1

    def recovered(self, items: list[Item], offset: int, epoch: str) -> list[Item]:
        """End a recovery: ``items`` were read after the old position; the topic now stands at
        ``(offset, epoch)``. Returns what to write, recovered then held, in order."""
        self.recovering = False
        out: list[Item] = []
        if epoch != self.epoch:
            if items or (self.epoch == "" and self.offset == 0):
                self.epoch = epoch  # the client held no epoch yet (it subscribed before the log existed)
            else:
                self.epoch, self.offset, self.held = epoch, offset, None
        for o, data in items:
            if o == self.offset + 1:
                self.offset = o
                out.append((o, data))
        if self.offset < offset and not items:
            self.offset = offset  # nothing to give (unrecoverable): continue from the topic's position
        self._drain(out)
        return out

    def skip(self, through: int) -> list[Item]:
        """Offsets up to ``through`` are gone: move past them; returns the held items now due."""
        out: list[Item] = []
        if through > self.offset:
            self.offset = through
        self._drain(out)
        return out
