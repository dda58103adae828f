"""Rules of the server: the drain pace against the deregistration delay, the reference server's registry
TTLs, topic history, output bounds and publish port, and what your own server is told (``server_env``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING

from stickyws.settings.findings import Finding
from stickyws.settings.rules.engine import CLIENT, LB, REFERENCE, SERVER, _error, _info, _warning, define_rule

if TYPE_CHECKING:
    from stickyws.settings.model import Settings
from stickyws.settings.scopes import parse_server_env
from stickyws.settings.values import ENV_PREFIX


@define_rule("registry-ttl-order", "routing TTL > heartbeat TTL > heartbeat interval.", REFERENCE)
def _ttl_order(s: Settings) -> Iterator[Finding]:
    sv = s.server
    if not sv.routing_ttl_s > sv.heartbeat_ttl_s:
        yield _error(
            "registry-ttl-order",
            f"routing_ttl_s={sv.routing_ttl_s} <= heartbeat_ttl_s={sv.heartbeat_ttl_s}: routes expire "
            "while their server is still alive",
            f"set routing_ttl_s > {sv.heartbeat_ttl_s}",
            "routing_ttl_s",
            "heartbeat_ttl_s",
        )
    if not sv.heartbeat_ttl_s > sv.heartbeat_interval_s:
        yield _error(
            "registry-ttl-order",
            f"heartbeat_ttl_s={sv.heartbeat_ttl_s} <= heartbeat_interval_s={sv.heartbeat_interval_s:g}: "
            "a live server looks dead between beats",
            f"set heartbeat_ttl_s > {sv.heartbeat_interval_s:g} (3 x is usual)",
            "heartbeat_ttl_s",
            "heartbeat_interval_s",
        )


@define_rule(
    "drain-pace-within-deregistration-delay",
    "A full server's paced drain tells its last client to reconnect before the ALB cuts it.",
    LB,
    SERVER,
)
def _drain_pace(s: Settings) -> Iterator[Finding]:
    sv, dereg = s.server, s.target_group.deregistration_delay_s
    if sv.drain_pace_per_s <= 0:
        return
    paced_s = sv.max_connections / sv.drain_pace_per_s
    if paced_s > dereg:
        yield _warning(
            "drain-pace-within-deregistration-delay",
            f"max_connections={sv.max_connections} at drain_pace_per_s={sv.drain_pace_per_s:g} take {paced_s:g} s "
            f"to drain, more than deregistration_delay_s={dereg}: the ALB cuts the clients of a full server that "
            "are told last",
            f"set drain_pace_per_s >= {math.ceil(sv.max_connections / max(dereg, 1))} or deregistration_delay_s "
            f">= {math.ceil(paced_s)}",
            "drain_pace_per_s",
            "max_connections",
            "deregistration_delay_s",
        )


@define_rule(
    "topic-retention-covers-reconnect",
    "Topic history outlives a drain and a reconnect backoff; clients offline longer are told, not silently skipped.",
    REFERENCE,
    CLIENT,
)
def _topic_retention(s: Settings) -> Iterator[Finding]:
    d, sv = s.delivery, s.server
    needed = sv.drain_window_s + s.client.reconnect_cap_s
    if d.topic_retention_s < needed:
        yield _error(
            "topic-retention-covers-reconnect",
            f"topic_retention_s={d.topic_retention_s} < drain_window_s + reconnect_cap_s = {needed:g}: clients "
            "moved by a drain can find their missed publications gone",
            f"set topic_retention_s >= {needed:g}",
            "topic_retention_s",
            "drain_window_s",
            "reconnect_cap_s",
        )
    elif d.topic_retention_s < sv.session_ttl_s:
        yield _info(
            "topic-retention-covers-reconnect",
            f"topic_retention_s={d.topic_retention_s} < session_ttl_s={sv.session_ttl_s}: a client offline "
            "longer than the retention resumes its session but gets `unrecoverable` for its topics",
            "topic_retention_s",
            "session_ttl_s",
        )


@define_rule(
    "output-bound-fits-messages", "A connection's output bound holds at least two of the largest messages.", REFERENCE
)
def _output_bound(s: Settings) -> Iterator[Finding]:
    d = s.delivery
    largest = max(s.server.max_message_bytes, d.max_publish_bytes)
    if d.max_output_bytes < 2 * largest:
        yield _error(
            "output-bound-fits-messages",
            f"max_output_bytes={d.max_output_bytes} < 2 x the largest message ({largest} bytes): one message "
            "can close a healthy connection as a slow consumer",
            f"set max_output_bytes >= {2 * largest}",
            "max_output_bytes",
            "max_message_bytes",
            "max_publish_bytes",
        )
    if d.outbox_max_bytes < d.max_publish_bytes:
        yield _warning(
            "output-bound-fits-messages",
            f"outbox_max_bytes={d.outbox_max_bytes} < max_publish_bytes={d.max_publish_bytes}: a push that large "
            "evicts every other message of the session",
            f"set outbox_max_bytes >= {d.max_publish_bytes}",
            "outbox_max_bytes",
            "max_publish_bytes",
        )


@define_rule(
    "publish-port-apart", "The publish endpoint listens on its own port, which the ALB never routes.", REFERENCE
)
def _publish_port(s: Settings) -> Iterator[Finding]:
    d = s.delivery
    if d.publish_port and d.publish_port == s.server.port:
        yield _error(
            "publish-port-apart",
            f"publish_port={d.publish_port} is the WebSocket port: the ALB would route to the publish endpoint",
            "set publish_port to another port (or 0 to turn the endpoint off)",
            "publish_port",
            "port",
        )


@define_rule(
    "server-env", "The settings your own server is told are named once each, under valid variable names.", SERVER
)
def _server_env(s: Settings) -> Iterator[Finding]:
    entries = s.server.server_env
    if not s.own_server:
        if entries:
            yield _error(
                "server-env",
                f"server_env={','.join(entries)!r} with server_mode=reference: the reference server reads every "
                "setting as STICKYWS_<NAME>",
                "set server_mode=own to run your own image, or leave server_env empty",
                "server_env",
                "server_mode",
            )
        return
    names = {name: ENV_PREFIX + name.upper() for name in s.fields_index}
    for problem in parse_server_env(entries, names)[1]:
        yield _error("server-env", problem, "write server_env as NAME=VARIABLE entries, e.g. port=PORT", "server_env")
