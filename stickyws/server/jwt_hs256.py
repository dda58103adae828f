"""Verify an HS256 JSON Web Token (RFC 7519) with the standard library: the check every handshake runs.

Contract of :func:`decode`
    * The token is three non-empty base64url segments (RFC 7515 compact form, no padding, no other
      character); the header is a JSON object whose ``alg`` is ``HS256``, with no ``crit`` or ``b64``
      extension and a string ``kid`` if any; the signature is HMAC-SHA256 of ``header.payload`` under
      the key (compared in constant time).
    * The payload is a JSON object holding ``exp``, ``aud`` and ``sub`` (present and not null).
    * ``exp``, ``nbf`` and ``iat`` are finite numbers (``bool`` is not), read as whole seconds;
      ``exp <= now - leeway`` is expired, ``nbf`` or ``iat`` later than ``now + leeway`` is not yet valid.
    * ``aud`` is a string or a list of strings that holds the audience; ``sub`` and ``jti`` (when
      present) are strings.
    * Anything else raises :class:`InvalidToken` (:class:`TokenExpired` for an expired one) with a
      message that names the check and never the token. Returns the payload.

PyJWT (``jwt.decode`` with the same algorithm list, audience, leeway and required claims) accepts and
refuses the same tokens, except that this module is stricter on form: PyJWT reads base64 padding and
numeric strings as ``exp``/``nbf``/``iat``.
tests/server/test_jwt_hs256.py checks both against one corpus. Why not PyJWT on the handshake: it
prepares the key again on every call (a PEM, SSH and two DER parses to refuse asymmetric keys) and
validates through several layers; measured in bench/findings.md (*The handshake on the compiled build*).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from typing import Any, Final

from stickyws.errors import ReferenceServerError
from stickyws.json_codec import loads

ALGORITHM: Final = "HS256"
#: The claims every token must hold.
REQUIRED_CLAIMS: Final = ("exp", "aud", "sub")
_COMPACT: Final = re.compile(r"([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)")
_PAD: Final = ("", "", "==", "=")


class InvalidToken(ReferenceServerError):
    """A token that is malformed, wrongly signed, or whose claims are not acceptable."""


class TokenExpired(InvalidToken):
    """A token whose ``exp`` has passed (beyond the leeway)."""


def _segment(text: str) -> bytes:
    """The bytes of a base64url segment (the alphabet is checked by :data:`_COMPACT`)."""
    if len(text) % 4 == 1:
        raise InvalidToken("a segment is not base64url")
    try:
        return base64.urlsafe_b64decode(text + _PAD[len(text) % 4])
    except binascii.Error:
        raise InvalidToken("a segment is not base64url") from None


def _object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise InvalidToken(f"the {what} is not JSON") from None
    if not isinstance(value, dict):
        raise InvalidToken(f"the {what} is not a JSON object")
    return value


def _seconds(claims: dict[str, Any], name: str) -> int | None:
    """A time claim as whole seconds (a fraction is dropped, as PyJWT does), or ``None`` when absent."""
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidToken(f"the {name} claim must be a number")
    try:
        return int(value)
    except (ValueError, OverflowError):  # NaN, infinity
        raise InvalidToken(f"the {name} claim must be a number") from None


def decode(token: str, key: bytes, *, audience: str, leeway_s: float, now_s: float) -> dict[str, Any]:
    """The claims of ``token`` signed with ``key`` for ``audience`` at ``now_s`` (see the module docstring)."""
    m = _COMPACT.fullmatch(token)
    if m is None:
        raise InvalidToken("not a compact JWS: three base64url segments separated by dots")
    header_b64, payload_b64, signature_b64 = m.groups()
    header = _object(_segment(header_b64), "header")
    if header.get("alg") != ALGORITHM:
        raise InvalidToken(f"the algorithm must be {ALGORITHM}")
    if "crit" in header or header.get("b64", True) is not True:
        raise InvalidToken("header extensions (crit, b64) are not supported")
    if not isinstance(header.get("kid", ""), str):
        raise InvalidToken("the kid header must be a string")
    signing_input = token[: len(header_b64) + 1 + len(payload_b64)].encode()
    expected = hmac.new(key, signing_input, hashlib.sha256).digest()
    if not hmac.compare_digest(_segment(signature_b64), expected):
        raise InvalidToken("the signature does not match")
    claims = _object(_segment(payload_b64), "payload")
    for name in REQUIRED_CLAIMS:
        if claims.get(name) is None:
            raise InvalidToken(f'the token must hold the "{name}" claim')
    exp = _seconds(claims, "exp")
    if exp is not None and exp <= now_s - leeway_s:
        raise TokenExpired("the token has expired")
    for name in ("nbf", "iat"):
        at = _seconds(claims, name)
        if at is not None and at > now_s + leeway_s:
            raise InvalidToken(f"the token is not yet valid ({name})")
    aud = claims["aud"]
    audiences = [aud] if isinstance(aud, str) else aud
    if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
        raise InvalidToken("the aud claim must be a string or a list of strings")
    if audience not in audiences:
        raise InvalidToken("the audience does not match")
    for name in ("sub", "jti"):
        if name in claims and not isinstance(claims[name], str):
            raise InvalidToken(f"the {name} claim must be a string")
    return claims
