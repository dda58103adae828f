"""RFC 6455 frames as the server sees them, with no I/O: the client's frames in, the server's out.

:class:`FrameReader` takes the bytes a client sent and returns whole messages and control frames in
order; a violation raises :class:`FrameError` with the close code to answer with. ``text_frame``,
``close_frame``, ``control_frame`` build the server's (unmasked) frames. :class:`Deflate` is
permessage-deflate (RFC 7692) for one connection, from its negotiation to each message.

Contract of the reader
    * Client frames must be masked (1002 otherwise); reserved bits are 1002 unless RSV1 marks a
      compressed message on a connection that negotiated permessage-deflate.
    * Fragmented messages are reassembled; control frames may come between fragments and must be
      final and at most 125 bytes.
    * A message longer than ``max_message_bytes`` (declared, reassembled or inflated) raises
      :class:`MessageTooBig` before its payload is held.
    * Text must be UTF-8 (1007), close frames carry a valid code (1002) and a UTF-8 reason (1007).
    * A violation loses nothing that came before it: the messages and control frames parsed from the
      same bytes ride on the :class:`FrameError` (``frames``), in order, to be handled before failing.
"""

from __future__ import annotations

import contextlib
import struct
import zlib
from collections.abc import Callable, Sequence

from stickyws.errors import ReferenceServerError

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

CLOSE_NORMAL = 1000
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_INVALID_DATA = 1007
CLOSE_MESSAGE_TOO_BIG = 1009
#: Close codes a peer may send (RFC 6455 7.4.1; 1004-1006 and 1015 are never sent on the wire).
_SENDABLE_CODES = frozenset((1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014))

_U16 = struct.Struct("!H")
_U64 = struct.Struct("!Q")
_HEAD1 = struct.Struct("!BB").pack
_HEAD2 = struct.Struct("!BBH").pack
_HEAD3 = struct.Struct("!BBQ").pack
_FIN_TEXT = 0x81
_FIN_TEXT_RSV1 = 0xC1
_DEFLATE_TAIL = b"\x00\x00\xff\xff"


def _unmask_python(data: bytes, mask: bytes) -> bytes:
    n = len(data)
    key = (mask * ((n >> 2) + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


unmask: Callable[[bytes, bytes], bytes] = _unmask_python
# websockets' C helper: 4-7x faster than the big-integer XOR from 40 bytes up (bench/findings.md).
with contextlib.suppress(ImportError):  # websockets ships wheels with it for the supported platforms
    from websockets.speedups import apply_mask as unmask


class FrameError(ReferenceServerError):
    """The client broke the protocol: close with ``code`` and ``reason``.

    ``frames``: what :meth:`FrameReader.feed` parsed from the same bytes before the violation, in
    order (empty when the violation came first); the peer sent them validly, so they are handled.
    """

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.frames: list[tuple[int, str | bytes]] = []


class MessageTooBig(FrameError):
    """A message above the limit (close 1009)."""

    def __init__(self, limit: int) -> None:
        super().__init__(CLOSE_MESSAGE_TOO_BIG, f"message larger than {limit} bytes")
        self.limit = limit


def text_frame(data: bytes, *, rsv1: bool = False) -> bytes:
    """A final, unmasked text frame holding ``data`` (``rsv1``: a compressed message)."""
    n = len(data)
    first = _FIN_TEXT_RSV1 if rsv1 else _FIN_TEXT
    head = _HEAD1(first, n) if n < 126 else _HEAD2(first, 126, n) if n < 65536 else _HEAD3(first, 127, n)
    return head + data


def control_frame(opcode: int, payload: bytes = b"") -> bytes:
    """A final, unmasked control frame (``payload`` at most 125 bytes)."""
    if len(payload) > 125:
        raise ValueError("control frame payloads are at most 125 bytes")
    return _HEAD1(0x80 | opcode, len(payload)) + payload


def close_frame(code: int, reason: str = "") -> bytes:
    """A close frame with ``code`` and ``reason`` (UTF-8, cut to the 123 bytes a close frame holds)."""
    raw = reason.encode()[:123]
    while raw:  # never cut inside a character
        try:
            raw.decode()
            break
        except UnicodeDecodeError:
            raw = raw[:-1]
    return control_frame(OP_CLOSE, _U16.pack(code) + raw)


def parse_close(payload: bytes) -> tuple[int, str]:
    """``(code, reason)`` of a close frame's payload (1005 when it has none); raises :class:`FrameError`."""
    if not payload:
        return 1005, ""
    if len(payload) == 1:
        raise FrameError(CLOSE_PROTOCOL_ERROR, "close frame with a 1-byte payload")
    code = _U16.unpack_from(payload)[0]
    if code not in _SENDABLE_CODES and not 3000 <= code <= 4999:
        raise FrameError(CLOSE_PROTOCOL_ERROR, f"invalid close code {code}")
    try:
        reason = payload[2:].decode()
    except UnicodeDecodeError:
        raise FrameError(CLOSE_INVALID_DATA, "close reason is not UTF-8") from None
    return code, reason


class Deflate:
    """permessage-deflate for one connection: inflate the client's messages, deflate the server's.

    :meth:`negotiate` picks the parameters from the client's offers. The server's own window and
    context follow the client's ``server_*`` parameters; the inflater keeps its context and a 15-bit
    window, which reads every message a client may send.
    """

    __slots__ = ("_deflater", "_inflater", "_no_context", "_window_bits")

    def __init__(self, *, window_bits: int = 15, no_context_takeover: bool = False) -> None:
        self._window_bits = window_bits
        self._no_context = no_context_takeover
        self._deflater: zlib._Compress | None = None
        self._inflater = zlib.decompressobj(wbits=-15)

    @staticmethod
    def negotiate(offers: Sequence[str]) -> tuple[Deflate, str] | None:
        """The first ``permessage-deflate`` offer this server accepts: the codec and the response
        header value; ``None`` when none is acceptable (the connection then runs uncompressed)."""
        for offer in offers:
            name, *params = (p.strip() for p in offer.split(";"))
            if name.lower() != "permessage-deflate":
                continue
            seen: dict[str, str | None] = {}
            ok = True
            for param in params:
                key, _, value = param.partition("=")
                key = key.strip().lower()
                value = value.strip().strip('"')
                if key in seen or key not in (
                    "server_no_context_takeover", "client_no_context_takeover",
                    "server_max_window_bits", "client_max_window_bits",
                ):  # fmt: skip
                    ok = False
                    break
                seen[key] = value or None
            if not ok:
                continue
            window = 15
            if "server_max_window_bits" in seen:
                raw = seen["server_max_window_bits"]
                if raw is None or not raw.isdigit() or not 9 <= int(raw) <= 15:
                    continue  # 8 is not what zlib can promise; anything else is malformed
                window = int(raw)
            client_bits = seen.get("client_max_window_bits", "15")
            if (
                "client_max_window_bits" in seen
                and client_bits is not None
                and (not client_bits.isdigit() or not 8 <= int(client_bits) <= 15)
            ):
                continue
            no_context = "server_no_context_takeover" in seen
            answer = ["permessage-deflate"]
            if no_context:
                answer.append("server_no_context_takeover")
            if "client_no_context_takeover" in seen:
                answer.append("client_no_context_takeover")
            if window != 15:
                answer.append(f"server_max_window_bits={window}")
            return Deflate(window_bits=window, no_context_takeover=no_context), "; ".join(answer)
        return None

    def inflate(self, data: bytes, limit: int) -> bytes:
        """One compressed message's payload, inflated; :class:`MessageTooBig` past ``limit`` bytes."""
        out = self._inflater.decompress(data + _DEFLATE_TAIL, limit + 1)
        if len(out) > limit or self._inflater.unconsumed_tail:
            raise MessageTooBig(limit)
        return out

    def deflate(self, data: bytes) -> bytes:
        """One message's payload, deflated (send it with RSV1 set)."""
        deflater = self._deflater
        if deflater is None or self._no_context:
            deflater = self._deflater = zlib.compressobj(6, zlib.DEFLATED, -self._window_bits)
        out = deflater.compress(data) + deflater.flush(zlib.Z_SYNC_FLUSH)
        return out[:-4] if out.endswith(_DEFLATE_TAIL) else out


class FrameReader:
    """The client's bytes in, ``(opcode, payload)`` out: whole text/binary messages (text decoded to
    ``str``) and control frames, in the order they arrived (see the module docstring)."""

    __slots__ = (
        "_deflate",
        "_held",
        "_held_len",
        "_limit",
        "_need",
        "_parts",
        "_parts_len",
        "_parts_op",
        "_parts_rsv1",
    )

    def __init__(self, max_message_bytes: int, deflate: Deflate | None = None) -> None:
        self._limit = max_message_bytes
        self._deflate = deflate
        #: Bytes of an incomplete frame, kept as chunks until ``_need`` bytes are there (no copy per read).
        self._held: list[bytes] = []
        self._held_len = 0
        self._need = 0
        self._parts: list[bytes] | None = None
        self._parts_op = 0
        self._parts_len = 0
        self._parts_rsv1 = False

    def feed(self, data: bytes) -> list[tuple[int, str | bytes]]:
        """Parse ``data`` (with what an earlier call left); raises :class:`FrameError` on a violation,
        carrying in ``frames`` what came before it. The reader is not to be fed after a violation."""
        if self._held:
            self._held.append(data)
            self._held_len += len(data)
            if self._held_len < self._need:
                return []
            buf = b"".join(self._held)
            self._held, self._held_len = [], 0
        else:
            buf = data
        out: list[tuple[int, str | bytes]] = []
        pos = 0
        end = len(buf)
        limit = self._limit
        need = 2
        try:
            while end - pos >= 2:
                b0 = buf[pos]
                b1 = buf[pos + 1]
                if not b1 & 0x80:
                    raise FrameError(CLOSE_PROTOCOL_ERROR, "client frames must be masked")
                n = b1 & 0x7F
                head = 6
                if n == 126:
                    if end - pos < 8:
                        need = 8
                        break
                    n = _U16.unpack_from(buf, pos + 2)[0]
                    head = 8
                elif n == 127:
                    if end - pos < 14:
                        need = 14
                        break
                    n = _U64.unpack_from(buf, pos + 2)[0]
                    head = 14
                opcode = b0 & 0x0F
                if opcode >= OP_CLOSE:
                    if not b0 & 0x80 or n > 125:
                        raise FrameError(CLOSE_PROTOCOL_ERROR, "control frames must be final and at most 125 bytes")
                elif n > limit or self._parts_len + n > limit:
                    raise MessageTooBig(limit)
                if end - pos < head + n:
                    need = head + n
                    break
                mask = buf[pos + head - 4 : pos + head]
                start = pos + head
                pos = start + n
                payload = unmask(buf[start:pos], mask) if n else b""
                rsv = b0 & 0x70
                if rsv and (rsv != 0x40 or self._deflate is None or opcode == OP_CONTINUATION or opcode >= OP_CLOSE):
                    raise FrameError(CLOSE_PROTOCOL_ERROR, "reserved bits set without an extension that uses them")
                if opcode >= OP_CLOSE:
                    if opcode not in (OP_CLOSE, OP_PING, OP_PONG):
                        raise FrameError(CLOSE_PROTOCOL_ERROR, f"unknown opcode {opcode}")
                    out.append((opcode, payload))
                    continue
                if opcode == OP_CONTINUATION:
                    if self._parts is None:
                        raise FrameError(CLOSE_PROTOCOL_ERROR, "continuation frame without a message to continue")
                    self._parts.append(payload)
                    self._parts_len += n
                    if not b0 & 0x80:
                        continue
                    opcode, rsv1, payload = self._parts_op, self._parts_rsv1, b"".join(self._parts)
                    self._parts, self._parts_len = None, 0
                elif opcode in (OP_TEXT, OP_BINARY):
                    if self._parts is not None:
                        raise FrameError(CLOSE_PROTOCOL_ERROR, "new message before the previous one was finished")
                    rsv1 = bool(rsv)
                    if not b0 & 0x80:
                        self._parts, self._parts_op, self._parts_len, self._parts_rsv1 = [payload], opcode, n, rsv1
                        continue
                else:
                    raise FrameError(CLOSE_PROTOCOL_ERROR, f"unknown opcode {opcode}")
                if rsv1:
                    assert self._deflate is not None
                    payload = self._deflate.inflate(payload, limit)
                if opcode == OP_TEXT:
                    try:
                        out.append((OP_TEXT, payload.decode()))
                    except UnicodeDecodeError:
                        raise FrameError(CLOSE_INVALID_DATA, "text frame is not UTF-8") from None
                else:
                    out.append((OP_BINARY, payload))
        except FrameError as exc:
            exc.frames = out
            raise
        if pos < end:
            rest = buf[pos:]
            self._held, self._held_len, self._need = [rest], len(rest), need
        return out

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete frame held since the last :meth:`feed`."""
        return self._held_len
