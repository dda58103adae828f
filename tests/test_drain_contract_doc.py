"""docs/drain-contract.md says what the code does: names rendered from stickyws.keys, the body DrainNotice parses."""

from __future__ import annotations

import json
import re
from pathlib import Path

from stickyws import keys, protocol
from stickyws.client.cookies import STICKY_COOKIE_PREFIX
from stickyws.drain_notifier import SOURCE as NOTIFIER_SOURCE
from stickyws.settings import Settings, env_name
from stickyws.settings.model import FIELDS
from stickyws.settings.rules import RULES
from stickyws.twin.cluster import DRAIN_SOURCE as TWIN_SOURCE

DOC = Path(__file__).resolve().parents[1] / "docs" / "drain-contract.md"
TEXT = DOC.read_text(encoding="utf-8")
#: Every name the key schema renders, with the placeholders the doc writes for ids.
SCHEMA_NAMES = {
    keys.drain_key("<serverId>"),
    keys.heartbeat_key("<serverId>"),
    keys.push_channel("<serverId>"),
    keys.takeover_channel("<serverId>"),
    keys.reconnect_channel("<userId>"),
}
#: A Redis name in the doc: ``ws:`` and what follows up to a space, backtick, quote or closing bracket.
NAME = re.compile(r"(?<![\w/])ws:(?!//)[^\s`\"')\]]+")


def _table(header: str) -> list[list[str]]:
    """The rows (cells stripped) of the Markdown table whose header row starts with ``header``."""
    lines = TEXT.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def _example_body() -> str:
    """The one ```json block of the doc."""
    blocks = re.findall(r"```json\n(.*?)\n```", TEXT, flags=re.S)
    assert len(blocks) == 1, "the doc has exactly one JSON example (the notice)"
    return str(blocks[0])


def test_every_redis_name_in_the_doc_is_rendered_by_the_key_schema() -> None:
    """Each ws: name in the doc is one the key schema renders, and the drain key/channel is among them."""
    found = set(NAME.findall(TEXT))
    assert found <= SCHEMA_NAMES, f"not rendered by stickyws.keys: {sorted(found - SCHEMA_NAMES)}"
    assert keys.drain_key("<serverId>") in found
    assert f"`{keys.drain_key('<serverId>')}`" in TEXT


def test_the_key_lifetime_in_the_doc_is_the_notifiers() -> None:
    """The SET's EX and the stated lifetime are DRAIN_NOTICE_TTL_S, longer than the longest delay plus stopTimeout."""
    ttl = keys.DRAIN_NOTICE_TTL_S
    flat = " ".join(TEXT.split())
    assert f"SET {keys.drain_key('<serverId>')} <json> EX {ttl}" in flat
    assert f"expires {ttl} s (`DRAIN_NOTICE_TTL_S`)" in flat
    longest = FIELDS["deregistration_delay_s"].spec.hi + FIELDS["stop_timeout_s"].spec.hi
    assert ttl > longest
    assert f"({FIELDS['deregistration_delay_s'].spec.hi:g} s) plus the longest stopTimeout" in flat
    assert f"({FIELDS['stop_timeout_s'].spec.hi:g} s)" in flat


def test_the_example_body_is_a_notice_in_the_notifiers_own_form() -> None:
    """The example parses with DrainNotice.from_json and is exactly what DrainNotice.to_json writes for it."""
    example = _example_body()
    notice = keys.DrainNotice.from_json(example)
    assert notice.source == NOTIFIER_SOURCE
    assert notice.issued_at_ms > 0
    assert notice.to_json() == example


def test_the_field_table_lists_the_body_fields_in_order() -> None:
    """The body table's fields are the JSON fields DrainNotice writes, in the same order, with their JSON types."""
    rows = _table("| field | JSON type |")
    written = json.loads(keys.DrainNotice("s", "t", "r", 1).to_json())
    assert [row[0].strip("`") for row in rows] == list(written)
    json_types = {str: "string", int: "integer"}
    assert [row[1] for row in rows] == [json_types[type(value)] for value in written.values()]
    assert "milliseconds since the Unix epoch" in rows[-1][2]


def test_the_doc_names_the_sources_and_close_codes_the_code_uses() -> None:
    """The notifier's and the twin's source names and the drain's close codes appear in the doc as the code has them."""
    assert f"`{NOTIFIER_SOURCE}` (the drain-notifier Lambda)" in TEXT
    assert f"`{TWIN_SOURCE}` (the local twin)" in TEXT
    assert f"code **{protocol.CLOSE_SERVICE_RESTART}** (Service Restart" in TEXT
    assert f"({protocol.CLOSE_SERVICE_RESTART}, or {protocol.CLOSE_GOING_AWAY} Going Away)" in TEXT


def test_the_reconnect_frames_in_the_doc_are_the_protocols() -> None:
    """The doc's reconnect frames (plain drain, drain with avoid, send-on) are what stickyws.protocol.reconnect
    writes, field for field and in order."""
    frames = re.findall(r'`(\{"type":"reconnect","reason".*?\})`', TEXT)
    revision = "<revision>"
    expected = [
        protocol.reconnect(protocol.RECONNECT_DRAINING, 0),
        protocol.reconnect(protocol.RECONNECT_DRAINING, 0, avoid=revision),
        protocol.reconnect(protocol.RECONNECT_SEND_ON, 0, avoid=revision),
    ]
    assert [f.replace(":N,", ":0,").replace(":N}", ":0}") for f in frames] == expected


def test_the_avoid_section_states_the_constants_the_code_uses() -> None:
    """The query name, send-on reason and jitter, hop limit, heartbeat field and cookie prefix in the doc are
    the code's."""
    flat = " ".join(TEXT.split())
    assert f"adds `{protocol.AVOID_QUERY}=<revision>` to the query of its next handshake" in flat
    assert f"with `N` at most {protocol.SEND_ON_MAX_RETRY_MS} (milliseconds), then closes with 1012" in flat
    assert f"gives up avoiding after {protocol.MAX_AVOID_HOPS} sends-on in a row" in flat
    assert f"(`{keys.heartbeat_key('<serverId>')}`, JSON field `{keys.HEARTBEAT_REVISION}`" in flat
    assert f"every cookie whose name starts with `{STICKY_COOKIE_PREFIX}`" in flat
    assert "`drain-pace-within-deregistration-delay`" in flat
    assert "drain-pace-within-deregistration-delay" in RULES


def test_the_settings_table_names_real_settings_variables_and_rules() -> None:
    """Each setting in the table exists, its variable is the one the settings codec renders, and the rules exist."""
    rows = _table("| setting | variable |")
    assert [row[0].strip("`") for row in rows] == [
        "deregistration_delay_s",
        "drain_window_s",
        "drain_pace_per_s",
        "revision",
        "shutdown_timeout_s",
        "stop_timeout_s",
        "health_check_path",
    ]
    for name, variable, *_ in rows:
        name = name.strip("`")
        assert name in FIELDS
        assert variable in ("", f"`{env_name(name)}`")
    for rule_id in re.findall(r"rule `([a-z0-9-]+)`", TEXT):
        assert rule_id in RULES
    assert "drain-within-deregistration-delay" in RULES
    assert "stop-timeout-covers-shutdown" in RULES
    ranges = {"deregistration_delay_s": "0-3600 s", "stop_timeout_s": "2-120 s"}
    for name, text in ranges.items():
        spec = FIELDS[name].spec
        assert text == f"{spec.lo:g}-{spec.hi:g} s"
        assert text in TEXT
    assert f"stickyws default {FIELDS['deregistration_delay_s'].default}" in TEXT


def test_the_server_env_example_tells_the_variables_the_doc_names() -> None:
    """server_env=drain_window_s,shutdown_timeout_s tells an own server the two variables the doc names."""
    example = "server_env=drain_window_s,shutdown_timeout_s"
    assert f"`{example}` tells it `STICKYWS_DRAIN_WINDOW_S` and `STICKYWS_SHUTDOWN_TIMEOUT_S`" in " ".join(TEXT.split())
    settings = Settings().with_overrides({"server_mode": "own", "server_env": example.split("=", 1)[1]})
    assert settings.told_env() == {
        "drain_window_s": "STICKYWS_DRAIN_WINDOW_S",
        "shutdown_timeout_s": "STICKYWS_SHUTDOWN_TIMEOUT_S",
    }
