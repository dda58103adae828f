"""The pure delivery cursors: in order, once, held behind gaps, told of what is gone."""

from __future__ import annotations

from stickyws.registry.interfaces import TopicPosition, history_after
from stickyws.registry.wire import Publication
from stickyws.server.delivery import SeqCursor, TopicCursor


def test_seq_cursor_passes_the_next_item_and_drops_duplicates() -> None:
    """Items go out in seq order; a seq already written is dropped."""
    c = SeqCursor(3)
    assert c.offer(4, "a") == [(4, "a")]
    assert c.offer(4, "a") == []
    assert c.offer(2, "old") == []
    assert c.sent == 4


def test_seq_cursor_holds_early_items_until_the_gap_is_filled() -> None:
    """An early item waits; the missing range is reported; filling it releases everything in order."""
    c = SeqCursor(0)
    assert c.offer(3, "c") == []
    assert c.offer(5, "e") == []
    assert c.missing() == (1, 2)
    assert c.waiting
    assert c.offer(2, "b") == []
    assert c.offer(1, "a") == [(1, "a"), (2, "b"), (3, "c")]
    assert c.missing() == (4, 4)
    assert c.offer(4, "d") == [(4, "d"), (5, "e")]
    assert c.missing() is None
    assert not c.waiting


def test_seq_cursor_skip_moves_past_lost_seqs_and_releases_what_follows() -> None:
    """Seqs known to be gone are skipped once; held items after them are released, older held ones dropped."""
    c = SeqCursor(0)
    c.offer(4, "d")
    c.offer(6, "f")
    assert c.skip(3) == [(4, "d")]
    assert c.sent == 4
    assert c.skip(5) == [(6, "f")]
    assert c.skip(2) == []
    assert c.sent == 6


def test_topic_cursor_adopts_the_first_epoch_and_holds_while_recovering() -> None:
    """A cursor made before the topic existed takes the first epoch it sees; while recovering it holds
    live publications and releases them after the recovered ones, each once."""
    t = TopicCursor(0, "", recovering=True)
    assert t.offer(3, "E", "c") == ([], False)
    t.held = {**(t.held or {}), 2: "b"}
    assert t.recovered([(1, "a"), (2, "b")], 2, "E") == [(1, "a"), (2, "b"), (3, "c")]
    assert (t.offset, t.epoch) == (3, "E")
    assert t.offer(3, "E", "c") == ([], False)


def test_topic_cursor_reports_an_epoch_change() -> None:
    """A publication of a new epoch means history was lost: the cursor restarts at 0 in that epoch."""
    t = TopicCursor(10, "old")
    assert t.offer(1, "new", "x") == ([(1, "x")], True)
    assert (t.offset, t.epoch) == (1, "new")
    t2 = TopicCursor(10, "old")
    assert t2.offer(3, "new", "z") == ([], True)
    assert t2.missing() == (1, 2)


def test_history_after_judges_completeness_and_epochs() -> None:
    """Recoverable only with the same epoch and every offset after the position; else None."""
    pos = TopicPosition(5, "E")
    full = [(3, "c"), (4, "d"), (5, "e")]
    assert history_after(pos, 2, "E", full, "t").publications == tuple(Publication("t", o, "E", d) for o, d in full)
    assert history_after(pos, 2, "E", full[1:], "t").publications is None  # offset 3 was trimmed
    assert history_after(pos, 2, "other", full, "t").publications is None  # the epoch changed
    assert history_after(pos, 5, "E", [], "t").publications == ()
    everything = [(o, str(o)) for o in range(1, 6)]
    assert history_after(pos, 0, "", everything, "t").publications is not None  # subscribed before the log


def test_pubsub_bodies_keep_the_payload_text_as_published() -> None:
    """A publication body round-trips with its payload text untouched, also when the topic name holds
    the payload marker; anything else is a ValueError."""
    import pytest

    from stickyws.registry.wire import parse_publication, parse_push, publication_body

    pub = Publication('news,"d":x', 7, "ep", '{"é":[1, 2.50]}', 123)
    assert parse_publication(publication_body(pub)) == pub
    assert parse_push('{"u":"a","s":"s1","q":3,"ts":9,"d":"hi"}').data == '"hi"'
    for bad in ("", "{}", '{"t":"x","o":1,"e":"e"}', '{"t":"x","d":1', "[1,2]"):
        with pytest.raises(ValueError, match=r"pub/sub body|malformed publication"):
            parse_publication(bad)
