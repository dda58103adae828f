"""The JSON codec reads and writes what the standard json module does, with orjson or without it."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

import stickyws.json_codec


@pytest.fixture(params=["orjson", "json"])
def codec(request: pytest.FixtureRequest) -> Iterator[ModuleType]:
    """The codec module as loaded with orjson installed, and as loaded where it is missing."""
    if request.param == "orjson":
        yield importlib.reload(stickyws.json_codec)
        return
    saved = sys.modules.get("orjson")
    sys.modules["orjson"] = None  # type: ignore[assignment]  # makes `import orjson` raise ImportError
    try:
        yield importlib.reload(stickyws.json_codec)
    finally:
        if saved is None:
            del sys.modules["orjson"]
        else:
            sys.modules["orjson"] = saved
        importlib.reload(stickyws.json_codec)


VALUES: list[Any] = [{"a": [1, 2.5, None, True]}, "héllo ✓", 2**70, -(2**70), {"nested": {"k": "v"}}, [], 0]


def test_backend_is_the_one_loaded(codec: ModuleType) -> None:
    """BACKEND names orjson when it can be imported, json otherwise."""
    expected = "orjson" if sys.modules.get("orjson") is not None else "json"
    backend = codec.BACKEND
    assert backend == expected


@pytest.mark.parametrize("value", VALUES)
def test_round_trip_matches_the_standard_module(codec: ModuleType, value: Any) -> None:
    """dumps writes compact UTF-8 JSON that the standard module reads back as the same value, and loads
    reads it as the standard module does."""
    text = codec.dumps(value)
    assert text == json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    assert codec.loads(text) == value == codec.loads(text.encode())


def test_loads_takes_what_the_standard_module_takes(codec: ModuleType) -> None:
    """NaN and integers beyond 64 bits parse as with the standard module; what is not JSON is a ValueError."""
    assert codec.loads('{"n":123456789012345678901234567890}') == {"n": 123456789012345678901234567890}
    assert codec.loads(b"[18446744073709551616]") == [2**64]
    assert codec.loads("[-9223372036854775809, 1234567890123456789]") == [-(2**63) - 1, 1234567890123456789]
    assert codec.loads('"\\ud800"') == "\ud800" == codec.loads('"\ud800"')  # escaped, and a lone surrogate
    nan = codec.loads("[NaN]")[0]
    assert nan != nan
    for bad in ("{", "", "[1,]", b"\xff"):
        with pytest.raises(ValueError):  # noqa: PT011 - the contract is the type; the text is the library's
            codec.loads(bad)


def test_dumps_refuses_what_is_not_json(codec: ModuleType) -> None:
    """A value that is not JSON raises TypeError, as with the standard module."""
    with pytest.raises(TypeError):
        codec.dumps({"x": object()})
