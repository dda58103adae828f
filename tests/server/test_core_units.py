"""Pure parts without sockets: tokens, resume tokens, origins, session state, outbox, drain plan, metrics."""

from __future__ import annotations

import io
import json
import random

import jwt
import pytest

from stickyws import protocol
from stickyws.registry.records import Commit, SessionRecord, append_outbox, extend_outbox
from stickyws.server import drain
from stickyws.server.auth import AuthError, TokenVerifier, extract_resume, extract_token, origin_allowed
from stickyws.server.handler import echo_handler, load_handler
from stickyws.server.metrics import Metrics, emf_line
from stickyws.server.session import SessionState
from tests.server.helpers import SECRET

V = TokenVerifier(SECRET, "stickyws")


def test_token_round_trip_and_pinned_algorithm() -> None:
    """A token issued by the verifier verifies to its sub; an unsigned (alg none) token is refused."""
    assert V.verify(V.issue("alice")) == "alice"
    unsigned = jwt.encode({"sub": "alice", "aud": "stickyws", "exp": 2**31}, None, algorithm="none")
    with pytest.raises(AuthError) as info:
        V.verify(unsigned)
    assert info.value.kind == "invalid"


def test_token_without_sub_or_exp_is_invalid_and_none_is_missing() -> None:
    """Tokens lacking sub or exp are invalid; no token at all is 'missing'."""
    no_sub = jwt.encode({"aud": "stickyws", "exp": 2**31}, SECRET, algorithm="HS256")
    no_exp = jwt.encode({"sub": "a", "aud": "stickyws"}, SECRET, algorithm="HS256")
    for bad in (no_sub, no_exp):
        with pytest.raises(AuthError) as info:
            V.verify(bad)
        assert info.value.kind == "invalid"
    with pytest.raises(AuthError) as info:
        V.verify(None)
    assert info.value.kind == "missing"


def test_resume_token_is_bound_to_user_and_key() -> None:
    """A resume token verifies for its user only, and not under another signing key."""
    token = V.resume_token("alice", "sess1")
    assert V.verify_resume("alice", token) == "sess1"
    for user, verifier in (("bob", V), ("alice", TokenVerifier("other-key-0123456789-abcdefghijklmn", "stickyws"))):
        with pytest.raises(AuthError):
            verifier.verify_resume(user, token)
    with pytest.raises(AuthError):
        V.verify_resume("alice", "sess2." + token.split(".", 1)[1])


def test_token_and_resume_extraction_order() -> None:
    """Query beats Authorization beats subprotocol; resume comes from query or header."""
    sub = (protocol.SUBPROTOCOL, protocol.BEARER_SUBPROTOCOL_PREFIX + "c")
    assert extract_token({"token": "a"}, {"Authorization": "Bearer b"}, sub) == "a"
    assert extract_token({}, {"Authorization": "Bearer b"}, sub) == "b"
    assert extract_token({}, {"Authorization": "Basic xyz"}, sub) == "c"
    assert extract_token({}, {}, (protocol.SUBPROTOCOL,)) is None
    assert extract_resume({"resume": "r1"}, {protocol.RESUME_HEADER: "r2"}) == "r1"
    assert extract_resume({}, {protocol.RESUME_HEADER: "r2"}) == "r2"


def test_origin_allow_list() -> None:
    """No Origin passes; listed origins pass; others fail unless '*' is listed."""
    assert origin_allowed(None, ())
    assert not origin_allowed("https://a.example", ())
    assert origin_allowed("https://a.example", ("https://a.example/",))
    assert not origin_allowed("https://a.example.evil", ("https://a.example",))
    assert origin_allowed("https://x.example", ("*",))


def test_session_local_apply_dedups_and_numbers_outputs() -> None:
    """apply_local handles an id once, numbers its outputs from last seq + 1, and tracks topics."""
    s = SessionState.from_record(SessionRecord("s", "u", 4, 10, ("a",)))
    res = s.apply_local(Commit(5, ('"x"', '"y"'), "add", "b"))
    assert (res.duplicate, res.first_seq, s.last_client_id, s.last_server_seq) == (False, 11, 5, 12)
    assert s.subscriptions == {"a", "b"}
    assert s.dirty
    assert s.apply_local(Commit(5, ('"x"',))).duplicate
    assert s.replay_after(11) == [(12, '"y"')]


def test_outbox_trims_oldest_by_count_and_bytes() -> None:
    """The outbox keeps the newest entries within the count and byte limits, and always the newest one."""
    box = append_outbox((), 1, [str(i) for i in range(10)], limit=4)
    assert [seq for seq, _ in box] == [7, 8, 9, 10]
    box = append_outbox((), 1, ["a" * 10, "b" * 10, "c" * 10], max_bytes=25)
    assert [seq for seq, _ in box] == [2, 3]
    assert append_outbox((), 1, ["z" * 100], max_bytes=10) == ((1, "z" * 100),)


def test_outbox_kept_with_a_running_character_count_trims_as_a_full_count_does() -> None:
    """extend_outbox with the carried character count gives the same outbox as counting afresh, and the true count."""
    rng = random.Random(7)
    box: tuple[tuple[int, str], ...] = ()
    chars, seq = -1, 1
    for _ in range(400):
        payloads = ["é" * rng.choice((1, 5, 40, 300)) for _ in range(rng.choice((0, 1, 1, 3)))]
        limit, max_bytes = rng.choice((4, 16)), rng.choice((200, 1000, 64 * 1024))
        expected = append_outbox(box, seq, payloads, limit=limit, max_bytes=max_bytes)
        box, chars = extend_outbox(box, seq, payloads, chars=chars, limit=limit, max_bytes=max_bytes)
        assert box == expected
        assert chars == sum(len(p) for _, p in box)
        seq += len(payloads)
    assert seq > 400


def test_session_mirror_carries_the_outbox_count_only_for_its_own_outbox() -> None:
    """A mirror hands its count to the next record, and -1 once its outbox was replaced behind its back."""
    s = SessionState.from_record(SessionRecord("s", "u"))
    s.apply_local(Commit(1, ('"abc"', '"de"')))
    assert s.record().outbox_chars == 9
    s.outbox = ((3, '"x"'),)
    assert s.record().outbox_chars == -1
    assert s.apply_local(Commit(2, ('"yz"',))).record.outbox_chars == 7


def test_drain_plan_puts_one_instruction_in_each_slot() -> None:
    """n connections over window w: the i-th instruction lies in [i*w/n, (i+1)*w/n); all connections once."""
    ids = [f"c{i}" for i in range(50)]
    plan = drain.plan(ids, 10.0, random.Random(7))
    assert sorted(step.conn_id for step in plan.steps) == sorted(ids)
    for i, step in enumerate(plan.steps):
        assert i * 0.2 <= step.at_s < (i + 1) * 0.2
        assert 0 <= step.retry_after_ms <= drain.MAX_RETRY_JITTER_MS
    assert plan.deadline_s == 10.0 + drain.CLOSE_GRACE_S
    assert [s.conn_id for s in plan.steps] != ids  # shuffled: order of connection is not order of drain


def test_effective_window_after_sigterm() -> None:
    """After SIGTERM the window shrinks to fit shutdown_timeout_s minus the close grace."""
    assert drain.effective_window_s(45, 10, sigterm=False) == 45
    assert drain.effective_window_s(45, 10, sigterm=True) == 10 - drain.CLOSE_GRACE_S
    assert drain.effective_window_s(3, 10, sigterm=True) == 3
    assert drain.effective_window_s(45, 0.5, sigterm=True) == 0
    assert drain.plan([], 5, random.Random()).steps == ()


def test_emf_lines_name_metrics_dimensions_and_reasons() -> None:
    """flush() writes ActiveConnections and counter deltas with ServiceName, and one line per rejection reason."""
    out = io.StringIO()
    m = Metrics("StickyWebSocket", service_name="ws-svc", out=out, clock_ms=lambda: 1234)
    m.count("MessagesIn", 3)
    m.reject("draining")
    m.reject("draining")
    m.flush(active_connections=7)
    m.flush(active_connections=6)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    first, reason, second = lines
    assert first["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "StickyWebSocket"
    assert first["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["ServiceName"]]
    assert (first["ServiceName"], first["ActiveConnections"], first["MessagesIn"]) == ("ws-svc", 7, 3)
    assert (reason["Reason"], reason["HandshakesRejected"]) == ("draining", 2)
    assert reason["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Reason", "ServiceName"]]
    assert (second["ActiveConnections"], second["MessagesIn"]) == (6, 0)
    no_dims = json.loads(emf_line("N", {"X": 1}, dimensions={}, units={}, timestamp_ms=1))
    assert no_dims["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [[]]


def test_audit_lines_never_carry_the_token() -> None:
    """An audit line holds the fields given and no token-like value."""
    out = io.StringIO()
    Metrics("N", out=out, clock_ms=lambda: 1).audit("route", decision="accept", user="alice", remote="127.0.0.1")
    body = json.loads(out.getvalue())
    assert body == {"log": "audit", "ts": 1, "event": "route", "decision": "accept", "user": "alice",
                    "remote": "127.0.0.1"}  # fmt: skip


def test_load_handler() -> None:
    """module:attr loads a callable; malformed or missing specs raise ValueError with a hint."""
    assert load_handler("stickyws.server.handler:echo_handler") is echo_handler
    for bad, hint in (
        ("nocolon", "must look like"),
        ("no.such.module:x", "cannot import"),
        ("stickyws.server.handler:missing", "is not a callable"),
    ):
        with pytest.raises(ValueError, match=hint):
            load_handler(bad)


def test_tune_gc_freezes_what_startup_built_and_collects_the_young_generation_less_often() -> None:
    """tune_gc moves every object alive now out of the collector's reach and sets only the young threshold."""
    import gc

    from stickyws.server.app import GC_YOUNG_THRESHOLD, tune_gc

    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, before[1], before[2])
        assert gc.get_freeze_count() > 1000
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
