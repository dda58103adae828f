"""The handshake's token check (stickyws.server.jwt_hs256) judges tokens as PyJWT does, and is stricter on form."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
import pytest

from stickyws.server import jwt_hs256
from stickyws.server.auth import AuthError, TokenVerifier

KEY = "k" * 43
AUD = "stickyws"
LEEWAY_S = 5


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _token(claims: Any, *, key: str = KEY, alg: str = "HS256", header: dict[str, Any] | None = None) -> str:
    return jwt.encode(claims, key, algorithm=alg, headers=header)


def _raw(header: Any, payload_text: str, key: str = KEY) -> str:
    """A token from a header value and payload text as given (signed correctly, whatever they hold)."""
    import hashlib
    import hmac

    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(payload_text.encode())}"
    signature = hmac.new(key.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def _claims(now: int, **changes: Any) -> dict[str, Any]:
    """Claims issued at ``now`` for ten minutes, with ``changes`` (``_DROP`` removes a claim)."""
    claims: dict[str, Any] = {"sub": "alice", "aud": AUD, "iat": now, "exp": now + 600}
    for name, value in changes.items():
        if value is _DROP:
            claims.pop(name)
        else:
            claims[name] = value
    return claims


_DROP = object()


def _tampered(now: int) -> str:
    """A valid token whose payload was replaced after signing."""
    header, _, signature = _token(_claims(now)).split(".")
    return f"{header}.{_b64(json.dumps(_claims(now, sub='mallory')).encode())}.{signature}"


def _corpus(now: int) -> dict[str, str]:
    """Tokens PyJWT and this module must judge alike at ``now``, by label."""
    return dict(
        [
            ("valid", _token(_claims(now))),
            ("aud list holding the audience", _token(_claims(now, aud=["other", AUD]))),
            ("expired beyond the leeway", _token(_claims(now, exp=now - LEEWAY_S - 30))),
            ("expired within the leeway", _token(_claims(now, exp=now - 2))),
            ("exp with a fraction", _token(_claims(now, exp=now + 600.75))),
            ("exp true", _token(_claims(now, exp=True))),
            ("exp null", _token(_claims(now, exp=None))),
            ("exp NaN", _raw({"alg": "HS256", "typ": "JWT"}, f'{{"sub":"a","aud":"{AUD}","exp":NaN}}')),
            ("exp Infinity", _raw({"alg": "HS256", "typ": "JWT"}, f'{{"sub":"a","aud":"{AUD}","exp":Infinity}}')),
            ("exp a list", _token(_claims(now, exp=[now + 600]))),
            ("no exp", _token(_claims(now, exp=_DROP))),
            ("no aud", _token(_claims(now, aud=_DROP))),
            ("no sub", _token(_claims(now, sub=_DROP))),
            ("another audience", _token(_claims(now, aud="other"))),
            ("aud list without the audience", _token(_claims(now, aud=["other"]))),
            ("aud list with a number", _token(_claims(now, aud=[AUD, 3]))),
            ("aud a number", _token(_claims(now, aud=3))),
            ("empty aud list", _token(_claims(now, aud=[]))),
            ("sub a number", _token(_claims(now, sub=7))),
            ("jti a number", _token(_claims(now, jti=7))),
            ("jti a string", _token(_claims(now, jti="j1"))),
            ("nbf beyond the leeway", _token(_claims(now, nbf=now + LEEWAY_S + 30))),
            ("nbf within the leeway", _token(_claims(now, nbf=now + 2))),
            ("nbf a string", _token(_claims(now, nbf="soon"))),
            ("iat beyond the leeway", _token(_claims(now, iat=now + LEEWAY_S + 30))),
            ("iat a string", _token(_claims(now, iat="then"))),
            ("no iat", _token(_claims(now, iat=_DROP))),
            ("extra claims", _token(_claims(now, role="admin", n={"deep": [1, 2]}))),
            ("non-ASCII sub", _token(_claims(now, sub="zoë"))),
            ("another key", _token(_claims(now), key="x" * 43)),
            ("alg none", jwt.encode(_claims(now), "", algorithm="none")),
            ("alg HS512", _token(_claims(now), key=KEY * 2, alg="HS512")),
            ("alg HS384", _token(_claims(now), key=KEY * 2, alg="HS384")),
            ("kid a string", _token(_claims(now), header={"kid": "k1"})),
            ("kid a number", _raw({"alg": "HS256", "kid": 1}, json.dumps(_claims(now)))),
            ("crit extension", _raw({"alg": "HS256", "crit": ["exp"], "exp": 1}, json.dumps(_claims(now)))),
            ("b64 false", _raw({"alg": "HS256", "b64": False, "crit": ["b64"]}, json.dumps(_claims(now)))),
            ("typ absent", _raw({"alg": "HS256"}, json.dumps(_claims(now)))),
            ("header a list", _raw(["HS256"], json.dumps(_claims(now)))),
            ("header without alg", _raw({"typ": "JWT"}, json.dumps(_claims(now)))),
            ("payload a list", _raw({"alg": "HS256"}, json.dumps([_claims(now)]))),
            ("payload not JSON", _raw({"alg": "HS256"}, "{sub: alice}")),
            ("payload a string", _raw({"alg": "HS256"}, '"alice"')),
            ("payload tampered", _tampered(now)),
            ("signature cut short", _token(_claims(now))[:-4]),
            ("signature empty", _token(_claims(now)).rsplit(".", 1)[0] + "."),
            ("two segments", _token(_claims(now)).rsplit(".", 1)[0]),
            ("four segments", _token(_claims(now)) + ".e30"),
            ("not a token", "hello"),
            (
                "a character outside base64url in the signature",
                _token(_claims(now))[:-2] + "!" + _token(_claims(now))[-2:],
            ),
            ("header not base64", "%%%." + _token(_claims(now)).split(".", 1)[1]),
        ]
    )


def _stricter(now: int) -> dict[str, str]:
    """Tokens PyJWT accepts and this module refuses at ``now`` (see its docstring), by label."""
    return dict(
        [
            ("exp a numeric string", _token(_claims(now, exp=str(now + 600)))),
            ("padding on the signature", _token(_claims(now)) + "="),
        ]
    )


def _pyjwt(token: str) -> str | None:
    """The ``sub`` PyJWT reads from ``token`` with the handshake's options, or ``None`` when it refuses it."""
    try:
        claims = jwt.decode(token, KEY, algorithms=["HS256"], audience=AUD, leeway=LEEWAY_S,
                            options={"require": ["exp", "aud", "sub"]})  # fmt: skip
    except jwt.InvalidTokenError:
        return None
    return str(claims["sub"])


def _ours(token: str) -> str | None:
    try:
        claims = jwt_hs256.decode(token, KEY.encode(), audience=AUD, leeway_s=LEEWAY_S, now_s=time.time())
    except jwt_hs256.InvalidToken:
        return None
    return str(claims["sub"])


@pytest.mark.parametrize("label", list(_corpus(0)))
def test_the_check_judges_every_token_of_the_corpus_as_pyjwt_does(label: str) -> None:
    """Accepted by both with the same subject, or refused by both."""
    token = _corpus(int(time.time()))[label]
    assert _ours(token) == _pyjwt(token)


def test_the_corpus_holds_tokens_both_accept_and_tokens_both_refuse() -> None:
    """The corpus is not one-sided: which tokens pass is named exactly."""
    accepted = [label for label, token in _corpus(int(time.time())).items() if _pyjwt(token) is not None]
    assert accepted == [
        "valid",
        "aud list holding the audience",
        "expired within the leeway",
        "exp with a fraction",
        "jti a string",
        "nbf within the leeway",
        "no iat",
        "extra claims",
        "non-ASCII sub",
        "kid a string",
        "typ absent",
    ]


@pytest.mark.parametrize("label", list(_stricter(0)))
def test_the_check_refuses_malformed_tokens_pyjwt_reads(label: str) -> None:
    """Form PyJWT tolerates (a numeric string, padding) is refused here."""
    token = _stricter(int(time.time()))[label]
    assert (_pyjwt(token), _ours(token)) == ("alice", None)


def test_header_extensions_are_refused() -> None:
    """A critical extension or an unencoded payload (RFC 7797) is refused: the check implements neither."""
    for header in ({"alg": "HS256", "crit": ["exp"], "exp": 1}, {"alg": "HS256", "b64": False, "crit": ["b64"]}):
        token = _raw(header, json.dumps(_claims(1_000_000)))
        with pytest.raises(jwt_hs256.InvalidToken, match="header extensions"):
            jwt_hs256.decode(token, KEY.encode(), audience=AUD, leeway_s=LEEWAY_S, now_s=1_000_000)


def test_the_verifier_reads_the_time_from_its_clock() -> None:
    """Expiry is judged against the verifier's clock: the same token is valid before exp + leeway, expired after."""
    token = TokenVerifier(KEY, AUD, clock=lambda: 1_000_000.0).issue("alice", ttl_s=60)
    assert TokenVerifier(KEY, AUD, clock=lambda: 1_000_064.0).verify(token) == "alice"
    with pytest.raises(AuthError, match=r"^token expired$"):
        TokenVerifier(KEY, AUD, clock=lambda: 1_000_065.0).verify(token)
    with pytest.raises(AuthError, match=r"^invalid token: the token is not yet valid \(iat\)$"):
        TokenVerifier(KEY, AUD, clock=lambda: 999_994.0).verify(token)
