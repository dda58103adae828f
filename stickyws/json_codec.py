"""JSON for frames, payloads and pub/sub bodies: the one place that picks the JSON library.

orjson when it is installed (the ``server`` extra pins it), else the standard :mod:`json`; callers
get the same values either way:

* :func:`loads` takes what orjson refuses but the standard module reads (``NaN``, ``Infinity``) from
  the standard module, and so any text with a run of 19 digits: orjson would read an integer beyond
  64 bits as a float, the standard module keeps it exact. So no client frame is judged differently.
* :func:`dumps` writes compact JSON with non-ASCII characters as UTF-8 (not ``\\u`` escapes); values
  orjson cannot encode (integers beyond 64 bits, subclasses it refuses) go through the standard module,
  whose errors (``TypeError``, ``ValueError``) are what a caller sees for values that are not JSON.
  One difference: orjson writes a float ``nan`` or ``inf`` as ``null`` (the standard module writes
  ``NaN``, which is not JSON and which browsers' ``JSON.parse`` refuses).

Measured on the echo hot path: bench/findings.md (*orjson against the standard json*).
"""

from __future__ import annotations

import json
from typing import Any

_orjson: Any
try:
    import orjson as _orjson
except ImportError:  # the client alone, or a server installed without the extra
    _orjson = None

#: Which library :func:`loads` and :func:`dumps` use first: ``"orjson"`` or ``"json"``.
BACKEND = "json" if _orjson is None else "orjson"

#: Bytes with every ASCII digit as ``0`` and every other byte as a space, and a run of 19 digits in that form:
#: the test for an integer orjson would read as a float (beyond 64 bits; a 19-digit negative can be below
#: -2**63). 2.4x faster than a regular expression for a short frame and 10x for 1.6 KB (``bytes.translate``
#: and ``in`` run in C; a regex search steps per position).
_DIGITS_AS_ZERO = bytes(48 if 48 <= c <= 57 else 32 for c in range(256))
_LONG_DIGITS = b"0" * 19

_std_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
_std_decode = json.JSONDecoder().decode

if _orjson is not None:
    _o_loads = _orjson.loads
    _o_dumps = _orjson.dumps
    _O_OPTS = _orjson.OPT_NON_STR_KEYS
    _ODecodeError = _orjson.JSONDecodeError
    _OEncodeError = _orjson.JSONEncodeError

    def loads(text: str | bytes) -> Any:
        """Parse JSON text; raises ``ValueError`` when it is not JSON."""
        raw = text.encode(errors="surrogatepass") if type(text) is str else text
        if _LONG_DIGITS not in raw.translate(_DIGITS_AS_ZERO):
            try:
                return _o_loads(raw)
            except _ODecodeError:
                pass
        return _std_decode(text if isinstance(text, str) else text.decode())

    def dumps(value: Any) -> str:
        """Compact JSON text of ``value``; raises ``TypeError``/``ValueError`` for what is not JSON."""
        try:
            raw: bytes = _o_dumps(value, option=_O_OPTS)
        except _OEncodeError:
            return _std_encoder.encode(value)
        return raw.decode()

else:

    def loads(text: str | bytes) -> Any:
        """Parse JSON text; raises ``ValueError`` when it is not JSON."""
        return _std_decode(text if isinstance(text, str) else text.decode())

    def dumps(value: Any) -> str:
        """Compact JSON text of ``value``; raises ``TypeError``/``ValueError`` for what is not JSON."""
        return _std_encoder.encode(value)
