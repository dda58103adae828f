"""The frame codec and the request-head parser the WebSocket adapter is built on, without sockets."""

from __future__ import annotations

import struct
import zlib

import pytest

from stickyws.server import http_head, ws_frames
from stickyws.server.http_head import BadRequest
from stickyws.server.ws_frames import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    Deflate,
    FrameError,
    FrameReader,
    MessageTooBig,
)
from tests.server.helpers import client_frame


def test_messages_come_out_whole_in_order_from_any_split_of_the_bytes() -> None:
    """Small, 16-bit and 64-bit lengths, a fragmented message with a ping between its fragments, fed one
    byte at a time, give the same messages in the same order as fed at once."""
    big = b"x" * 70_000
    stream = (
        client_frame(OP_TEXT, b'{"a":1}')
        + client_frame(OP_TEXT, "é".encode() * 100)
        + client_frame(OP_TEXT, b"ab", fin=False)
        + client_frame(OP_PING, b"p")
        + client_frame(0x0, b"cd", fin=False)
        + client_frame(0x0, b"ef")
        + client_frame(OP_BINARY, big)
        + client_frame(OP_PONG, b"")
    )
    expected = [(OP_TEXT, '{"a":1}'), (OP_TEXT, "é" * 100), (OP_PING, b"p"), (OP_TEXT, "abcdef"),
                (OP_BINARY, big), (OP_PONG, b"")]  # fmt: skip
    assert FrameReader(100_000).feed(stream) == expected
    reader = FrameReader(100_000)
    got = []
    for i in range(0, len(stream), 997):
        got.extend(reader.feed(stream[i : i + 997]))
    assert got == expected
    reader = FrameReader(100_000)
    one_by_one = [item for i in range(2000) for item in reader.feed(stream[i : i + 1])]
    assert one_by_one == expected[:4]
    assert reader.buffered > 0


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (client_frame(OP_TEXT, b"hi", masked=False), 1002),
        (client_frame(OP_TEXT, b"\xff\xfe"), 1007),
        (client_frame(0x3, b"?"), 1002),
        (client_frame(OP_PING, b"p" * 126), 1002),
        (client_frame(OP_PING, b"p", fin=False), 1002),
        (client_frame(0x0, b"orphan"), 1002),
        (client_frame(OP_TEXT, b"a", fin=False) + client_frame(OP_TEXT, b"b"), 1002),
        (client_frame(OP_TEXT, b"hi", rsv=0x40), 1002),
    ],
    ids=[
        "unmasked",
        "bad-utf8",
        "unknown-opcode",
        "long-ping",
        "fragmented-ping",
        "orphan-continuation",
        "interleaved-message",
        "rsv1-without-deflate",
    ],
)
def test_protocol_violations_raise_the_close_code_to_answer(frame: bytes, code: int) -> None:
    """Each violation of RFC 6455 raises FrameError with the close code the server answers with."""
    with pytest.raises(FrameError) as caught:
        FrameReader(1024).feed(frame)
    assert caught.value.code == code


def test_a_message_over_the_limit_is_refused_from_its_header_or_its_fragments() -> None:
    """A declared length over the limit raises MessageTooBig before the payload arrives; so do fragments
    that add up to more."""
    header_only = client_frame(OP_TEXT, b"x" * 2000)[:8]
    with pytest.raises(MessageTooBig) as caught:
        FrameReader(1024).feed(header_only)
    assert (caught.value.code, caught.value.reason) == (1009, "message larger than 1024 bytes")
    reader = FrameReader(1024)
    assert reader.feed(client_frame(OP_TEXT, b"x" * 600, fin=False)) == []
    with pytest.raises(MessageTooBig):
        reader.feed(client_frame(0x0, b"x" * 600))


def test_close_frames_carry_valid_codes_and_utf8_reasons() -> None:
    """parse_close reads code and reason, 1005 for an empty payload; bad codes and reasons raise."""
    assert ws_frames.parse_close(b"") == (1005, "")
    assert ws_frames.parse_close(struct.pack("!H", 4001) + b"taken over") == (4001, "taken over")
    for payload, code in ((b"\x03", 1002), (struct.pack("!H", 1005), 1002), (struct.pack("!H", 1000) + b"\xff", 1007)):
        with pytest.raises(FrameError) as caught:
            ws_frames.parse_close(payload)
        assert caught.value.code == code
    frame = ws_frames.close_frame(1001, "é" * 100)
    assert (frame[0], frame[1] <= 125) == (0x88, True)
    assert ws_frames.parse_close(frame[2:]) == (1001, "é" * 61)


def test_server_frames_are_unmasked_and_sized_by_the_three_length_forms() -> None:
    """text_frame uses the 7-bit, 16-bit and 64-bit length forms and never masks."""
    for n, head in ((125, b"\x81\x7d"), (126, b"\x81\x7e\x00\x7e"), (65536, b"\x81\x7f" + struct.pack("!Q", 65536))):
        frame = ws_frames.text_frame(b"a" * n)
        assert (frame[: len(head)], len(frame)) == (head, len(head) + n)


def test_permessage_deflate_negotiates_and_round_trips() -> None:
    """The first acceptable offer is taken; compressed client messages inflate, server messages deflate
    to what a raw inflater reads, with and without context takeover; an inflated bomb is MessageTooBig."""
    assert Deflate.negotiate(["x-webkit-deflate-frame", "permessage-deflate; server_max_window_bits=8"]) is None
    negotiated = Deflate.negotiate(["permessage-deflate; server_no_context_takeover; client_max_window_bits"])
    assert negotiated is not None
    deflate, answer = negotiated
    assert answer == "permessage-deflate; server_no_context_takeover"
    client = zlib.compressobj(wbits=-15)
    reader = FrameReader(4096, deflate)
    for text in ("hello " * 50, "again " * 50):
        body = client.compress(text.encode()) + client.flush(zlib.Z_SYNC_FLUSH)
        assert reader.feed(client_frame(OP_TEXT, body[:-4], rsv=0x40)) == [(OP_TEXT, text)]
    inflater = zlib.decompressobj(wbits=-15)
    for _ in range(2):
        out = deflate.deflate(b"server says hi " * 20)
        assert inflater.decompress(out + b"\x00\x00\xff\xff") == b"server says hi " * 20
    bomb = zlib.compress(b"\x00" * 100_000)[2:-4]
    with pytest.raises(MessageTooBig):
        FrameReader(4096, Deflate()).feed(client_frame(OP_BINARY, bomb, rsv=0x40))
    closing = FrameReader(4096, Deflate())
    with pytest.raises(FrameError):
        closing.feed(client_frame(OP_CLOSE, b"", rsv=0x40))


def test_request_heads_parse_with_case_free_headers_and_the_first_query_value() -> None:
    """A request head gives method, path, the first value of each query parameter and headers looked up
    without regard to case, repeated ones joined."""
    raw = (
        b"GET /ws?token=a&token=b&lastSeq=3&flag HTTP/1.1\r\nHost: x\r\nupgrade: WebSocket\r\n"
        b"Sec-WebSocket-Protocol: stickyws.v1\r\nSec-WebSocket-Protocol: bearer.t\r\n\r\n"
    )
    head = http_head.parse_head(raw[: http_head.head_end(raw)])
    assert (head.method, head.path, dict(head.query)) == ("GET", "/ws", {"token": "a", "lastSeq": "3", "flag": ""})
    assert head.wants_upgrade
    assert head.headers["UPGRADE"] == "WebSocket"
    assert head.headers.tokens("sec-websocket-protocol") == ("stickyws.v1", "bearer.t")


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET /" + b"a" * 9000, 414),
        (b"GET / HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\n" + b"X-A: 1\r\n" * 101 + b"\r\n", 431),
        (b"GET / HTTP/1.1\r\n" + b"X-Long: " + b"a" * 8000 + b"\r\n" * 1 + b"X-B: " + b"b" * 8000 * 4, 431),
        (b"GET /\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\n\r\n", 505),
        (b"GET http://evil/ HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nNo colon here\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    ],
    ids=[
        "long-line",
        "long-header",
        "many-headers",
        "long-head",
        "no-version",
        "http2",
        "absolute-target",
        "bad-header",
        "body",
        "chunked",
    ],
)
def test_request_heads_over_the_limits_or_malformed_get_the_status_to_answer(raw: bytes, status: int) -> None:
    """Request lines, headers and heads over the limits, and malformed heads, raise BadRequest with the
    4xx/5xx status the server answers."""

    def parse() -> None:
        end = http_head.head_end(raw)
        assert end > 0, "the head is incomplete and under the limits"
        http_head.parse_head(raw[:end])

    with pytest.raises(BadRequest) as caught:
        parse()
    assert caught.value.status == status


def test_accept_key_follows_rfc_6455() -> None:
    """The RFC's example key gives its example accept value; a key that is not 16 bytes of base64 gives None."""
    assert http_head.accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert http_head.accept_key("not base64!") is None
    assert http_head.accept_key("c2hvcnQ=") is None
