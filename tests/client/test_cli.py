"""`stickyws client`: readable event lines and one-line errors for what the user must fix."""

from __future__ import annotations

import pytest

from stickyws.cli import main
from stickyws.client.cli import describe


def test_event_lines_are_readable() -> None:
    """Each event kind renders as one fixed-width line with the facts an operator needs."""
    connected = {"server": "s2", "session": "abc", "resumed": True, "last_client_id": 3, "resending": 1}
    line = "connected   server=s2 session=abc resumed=yes lastClientId=3 resending=1"
    assert describe("connected", connected) == line
    assert describe("closed", {"code": 1012, "reason": "x"}) == "closed      1012 (service restart)"
    assert describe("rejected", {"status": 503, "retry_after_s": 1.0}) == "rejected    HTTP 503, Retry-After 1 s"
    assert describe("ack", {"id": 4, "duplicate": True}) == "ack         #4 (duplicate: handled before)"
    assert describe("backoff", {"delay_s": 0.5, "attempt": 2, "reason": "closed 1006 (abnormal closure)"}) == (
        "backoff     0.50 s (attempt 2): closed 1006 (abnormal closure)"
    )


def test_missing_token_and_bad_url_are_one_line_errors(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a token, or with an http:// URL, the command exits 2 with one line saying what to do."""
    monkeypatch.delenv("STICKYWS_TOKEN", raising=False)
    assert main(["client", "ws://127.0.0.1:1/ws"]) == 2
    assert capsys.readouterr().err.strip().startswith("stickyws: no token: pass --token or set STICKYWS_TOKEN")
    assert main(["client", "http://127.0.0.1:1/ws", "--token", "t"]) == 2
    assert "is not a ws:// or wss:// URL" in capsys.readouterr().err
