"""Connection tokens (JWT, HS256) and resume tokens (HMAC), pure and I/O-free.

Contracts
    * :meth:`TokenVerifier.verify` returns the user id (``sub``) of a valid token or raises
      :class:`AuthError` (``missing`` -> 401, ``invalid`` -> 403). ``exp``, ``aud`` and ``sub`` are
      required; the algorithm is pinned to HS256 (a token cannot choose ``none`` or RS256).
    * A resume token is ``<sessionId>.<mac>`` where ``mac`` is HMAC-SHA256 over user id and session
      id with a key derived from the signing key. It cannot be forged without the key and is bound to
      its user: another user's valid JWT plus a stolen resume token is refused.
    * :func:`extract_token` finds the JWT in the ``token`` query parameter, an
      ``Authorization: Bearer`` header, or a ``stickyws.bearer.<jwt>`` subprotocol entry, in that order.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from stickyws import protocol
from stickyws.errors import ReferenceServerError
from stickyws.server import jwt_hs256

ALGORITHM = jwt_hs256.ALGORITHM
#: Clock skew tolerated on ``exp``/``nbf``/``iat``.
LEEWAY_S = 5
_RESUME_KEY_LABEL = b"stickyws resume-token v1"


class AuthError(ReferenceServerError):
    """A handshake whose token is missing (``kind="missing"``) or not acceptable (``kind="invalid"``)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class TokenVerifier:
    """Verifies connection JWTs and issues/verifies resume tokens with one signing key."""

    secret: str
    audience: str
    #: Wall-clock seconds (``exp``, ``nbf`` and ``iat`` are compared with it).
    clock: Callable[[], float] = field(default=time.time, repr=False, compare=False)

    def verify(self, token: str | None) -> str:
        """The ``sub`` of a valid token; raises :class:`AuthError` otherwise (never logs the token)."""
        if not token:
            raise AuthError(
                "missing", "no token: pass ?token=, Authorization: Bearer, or a stickyws.bearer.* subprotocol"
            )
        try:
            claims = jwt_hs256.decode(
                token, self.secret.encode(), audience=self.audience, leeway_s=LEEWAY_S, now_s=self.clock()
            )
        except jwt_hs256.TokenExpired:
            raise AuthError("invalid", "token expired") from None
        except jwt_hs256.InvalidToken as exc:
            raise AuthError("invalid", f"invalid token: {exc}") from None
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub or len(sub) > 256:
            raise AuthError("invalid", "token sub must be a non-empty string of at most 256 characters")
        return sub

    def issue(self, user_id: str, ttl_s: int = 3600, now_s: float | None = None) -> str:
        """A token for ``user_id`` valid for ``ttl_s`` seconds (for ``stickyws token`` and tests)."""
        now = int(now_s if now_s is not None else self.clock())
        claims = {"sub": user_id, "aud": self.audience, "iat": now, "exp": now + ttl_s}
        import jwt  # PyJWT issues (the handshake verifies with jwt_hs256): loaded only by what issues tokens

        return jwt.encode(claims, self.secret, algorithm=ALGORITHM)

    def _resume_mac(self, user_id: str, session_id: str) -> str:
        key = hmac.new(self.secret.encode(), _RESUME_KEY_LABEL, hashlib.sha256).digest()
        mac = hmac.new(key, f"{user_id}\x00{session_id}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def resume_token(self, user_id: str, session_id: str) -> str:
        """The resume token for ``session_id`` of ``user_id``."""
        return f"{session_id}.{self._resume_mac(user_id, session_id)}"

    def verify_resume(self, user_id: str, token: str) -> str:
        """The session id of a resume token issued to ``user_id``; raises :class:`AuthError` (invalid)."""
        session_id, _, mac = token.partition(".")
        expected = self._resume_mac(user_id, session_id).encode()
        if not session_id or not mac or not hmac.compare_digest(mac.encode(), expected):
            raise AuthError("invalid", "resume token is not valid for this user")
        return session_id


def new_session_id() -> str:
    """A fresh, unguessable session id (URL-safe, no dots)."""
    return secrets.token_urlsafe(18)


def generate_dev_secret() -> str:
    """A random signing key for ``serve --dev``."""
    return secrets.token_urlsafe(32)


def extract_token(query: Mapping[str, str], headers: Mapping[str, str], subprotocols: Iterable[str]) -> str | None:
    """The JWT of a handshake, or ``None``; see the module docstring for the order."""
    token = query.get("token")
    if token:
        return token
    auth = headers.get("Authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    for entry in subprotocols:
        entry = entry.strip()
        if entry.startswith(protocol.BEARER_SUBPROTOCOL_PREFIX):
            return entry[len(protocol.BEARER_SUBPROTOCOL_PREFIX) :] or None
    return None


def extract_resume(query: Mapping[str, str], headers: Mapping[str, str]) -> str | None:
    """The resume token of a handshake (query ``resume`` or header ``X-Stickyws-Resume``), or ``None``."""
    return query.get(protocol.RESUME_QUERY) or headers.get(protocol.RESUME_HEADER) or None


def origin_allowed(origin: str | None, allowed: Iterable[str]) -> bool:
    """Whether a handshake's ``Origin`` may connect.

    No ``Origin`` (non-browser clients) is allowed; a browser origin must be listed exactly
    (scheme://host[:port]) or the list must contain ``*``.
    """
    if origin is None:
        return True
    allowed = tuple(allowed)
    return "*" in allowed or origin.rstrip("/") in {a.rstrip("/") for a in allowed}
