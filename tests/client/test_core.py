"""The client's pure core: backoff, cookie jar, outbox and reconnect policy."""

from __future__ import annotations

import random

import pytest

from stickyws import protocol
from stickyws.client import policy
from stickyws.client.backoff import Backoff, parse_retry_after
from stickyws.client.cookies import CookieJar, endpoint_of, parse_set_cookie
from stickyws.client.outbox import Outbox
from stickyws.settings import Settings


def test_backoff_is_full_jitter_doubling_to_the_cap() -> None:
    """Delays lie in [0, min(cap, base*2^attempt)] and use the whole range."""
    b = Backoff(base_s=1.0, cap_s=30.0)
    assert [b.ceiling_s(a) for a in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    rng = random.Random(7)
    for attempt in range(8):
        delays = [b.delay_s(attempt, rng=rng) for _ in range(2000)]
        assert 0 <= min(delays) < 0.05 * b.ceiling_s(attempt)
        assert 0.95 * b.ceiling_s(attempt) < max(delays) <= b.ceiling_s(attempt)


def test_backoff_honours_the_server_hint_as_a_floor() -> None:
    """A retryAfterMs / Retry-After hint is waited in full, with jitter on top, and never capped."""
    b = Backoff(base_s=0.25, cap_s=5.0)
    rng = random.Random(1)
    delays = [b.delay_s(0, hint_s=2.0, rng=rng) for _ in range(1000)]
    assert min(delays) >= 2.0
    assert max(delays) <= 2.25
    assert b.delay_s(0, hint_s=60.0, rng=rng) >= 60.0
    assert b.bound_s(3, hint_s=1.0) == 3.0


def test_backoff_from_settings_and_invalid_values() -> None:
    """The settings' reconnect_base_ms / reconnect_cap_s define the default backoff."""
    b = Backoff.from_settings(Settings().with_overrides({"reconnect_base_ms": 250, "reconnect_cap_s": 4}))
    assert (b.base_s, b.cap_s) == (0.25, 4.0)
    assert Backoff.from_settings(Settings()) == Backoff(1.0, 30.0)
    with pytest.raises(ValueError, match="base_s <= cap_s"):
        Backoff(base_s=2, cap_s=1)


def test_retry_after_parses_seconds_and_dates() -> None:
    """Retry-After as delta-seconds or an HTTP date; garbage and absence give None."""
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("Thu, 01 Jan 1970 00:00:10 GMT", now_s=4.0) == 6.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_cookie_jar_keeps_values_opaque_per_endpoint() -> None:
    """AWSALB-style values come back byte for byte, only to the endpoint that set them."""
    now = [1000.0]
    jar = CookieJar(clock=lambda: now[0])
    alb = "Zm9vL2Jhcj0=+/x=="
    jar.update("wss://api.example.com/ws", [f"AWSALB={alb}; Expires=Thu, 01 Jan 2099 00:00:00 GMT; Path=/"])
    jar.update("wss://api.example.com/ws", ["AWSALBCORS=abc; SameSite=None; Secure", "SESSION=s1; Max-Age=60"])
    assert jar.header("wss://api.example.com:443/ws?resume=x") == f"AWSALB={alb}; AWSALBCORS=abc; SESSION=s1"
    assert jar.header("https://api.example.com/other") is not None
    assert jar.header("wss://other.example.com/ws") is None
    assert jar.header("ws://api.example.com/ws") is None  # port 80 is another endpoint
    now[0] += 61
    assert jar.cookies("wss://api.example.com/ws") == {"AWSALB": alb, "AWSALBCORS": "abc"}


def test_cookie_jar_replaces_and_deletes() -> None:
    """A new Set-Cookie replaces the value; Max-Age=0 deletes it; a nameless header is ignored."""
    jar = CookieJar(clock=lambda: 0.0)
    url = "ws://127.0.0.1:8000/ws"
    assert jar.update(url, ["AWSALB=s1"]) == ["AWSALB"]
    assert jar.update(url, ["AWSALB=s1"]) == []
    assert jar.update(url, ["AWSALB=s2", "=x", "junk"]) == ["AWSALB"]
    assert jar.cookies(url) == {"AWSALB": "s2"}
    assert jar.update(url, ["AWSALB=; Max-Age=0"]) == ["AWSALB"]
    assert jar.header(url) is None
    assert parse_set_cookie("A=b; Max-Age=nope", 5.0) == parse_set_cookie("A=b", 5.0)
    assert endpoint_of("WS://Host:81/x") == "http://host:81"
    with pytest.raises(ValueError, match="not a ws://"):
        endpoint_of("ftp://x")


def test_outbox_resends_only_what_the_session_has_not_handled() -> None:
    """After a resume, ids up to lastClientId are confirmed and the rest are resent in order."""
    box = Outbox()
    ids = [box.add({"n": n}).id for n in range(1, 6)]
    assert ids == [1, 2, 3, 4, 5]
    assert box.on_connected(0, resumed=False) == [box.pending[i].message for i in ids]
    for i in ids:
        box.transmitted(i)
    box.on_ack(1)
    resend = box.on_connected(3, resumed=True)  # 2 and 3 handled, acks lost with the connection
    assert [m.id for m in resend] == [4, 5]
    for m in resend:
        box.transmitted(m.id)
    box.on_ack(4)
    box.on_ack(5, duplicate=True)
    assert box.pending == {}
    assert dict(box.confirmations) == {1: 1, 2: 1, 3: 1, 4: 1}
    assert (box.resent, box.confirmed_by_resume, box.duplicate_acks, box.sent_count) == (2, 2, 1, 5)


def test_outbox_counts_a_second_confirmation() -> None:
    """A second non-duplicate ack for one id is recorded, so a test can catch double handling."""
    box = Outbox()
    box.add("x")
    assert box.on_ack(1) is True
    assert box.on_ack(1) is False
    assert box.confirmations[1] == 2


def test_outbox_fresh_session_resends_everything() -> None:
    """A reconnect that is not resumed transmits every pending message again."""
    box = Outbox()
    box.add("a")
    box.add_control("subscribe", "news")
    assert [m.type for m in box.on_connected(7, resumed=False)] == ["send", "subscribe"]
    assert box.unconfirmed() == [1, 2]


@pytest.mark.parametrize(
    ("code", "reconnect"),
    [
        (1001, True),
        (1006, True),
        (None, True),
        (1011, True),
        (1012, True),
        (1013, True),
        (1000, False),
        (1008, False),
        (protocol.CLOSE_TAKEN_OVER, False),
    ],
)
def test_close_codes_decide_reconnect(code: int | None, reconnect: bool) -> None:
    """Exactly the protocol's reconnect close codes (and a missing close frame) lead to a reconnect."""
    assert policy.on_close(code).reconnect is reconnect


def test_handshake_statuses_and_reconnect_frames() -> None:
    """503/502/504/429/409 retry with the Retry-After hint; 401/403/426 stop; a reconnect frame resets attempts."""
    assert policy.on_handshake_status(503, 2.0) == policy.Decision(True, "handshake answered 503", 2.0)
    assert all(policy.on_handshake_status(s, None).reconnect for s in (409, 429, 502, 504))
    assert not any(policy.on_handshake_status(s, None).reconnect for s in (401, 403, 404, 426, 500))
    d = policy.on_reconnect_frame({"type": "reconnect", "reason": "server_draining", "retryAfterMs": 750})
    assert (d.reconnect, d.hint_s, d.reset_attempts) == (True, 0.75, True)
    assert policy.on_reconnect_frame({"type": "reconnect", "retryAfterMs": "x"}).hint_s is None
    assert policy.close_name(None) == "1006 (abnormal closure)"
