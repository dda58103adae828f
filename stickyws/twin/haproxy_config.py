"""Render the local twin's ``haproxy.cfg`` from the one settings model.

Pure: settings and a :class:`Layout` (ports, socket path, server slots) in, configuration text
out. The mapping is the one measured in ``local-alb-twin-facts.md``:

===============================================  =================================================
ALB / target group setting                       HAProxy rendering
===============================================  =================================================
``lb_cookie`` stickiness, duration D             ``cookie AWSALB insert indirect nocache maxidle Ds
                                                 maxlife Ds attr "Max-Age=D"``, ``cookie <slot>``
                                                 on every server; ``AWSALBCORS`` (same value,
                                                 ``SameSite=None; Secure``) on every server
                                                 response, routed like ``AWSALB`` when alone
``app_cookie`` stickiness on cookie C            ``cookie AWSALBAPP-0`` (routing on it, never
                                                 inserted by HAProxy), ``cookie <slot>`` on every
                                                 server; a response that sets C (or answers a
                                                 request that carried ``AWSALBAPP-0``) gets
                                                 ``AWSALBAPP-0=<slot>; Max-Age=D``
``http2_enabled=false``                          plain HTTP/1.1 ``bind`` (no ``alpn h2``, no
                                                 ``proto h2``)
``idle_timeout_s`` T                             ``timeout tunnel T`` (after the 101) and
                                                 ``timeout client/server T`` (HTTP phase)
health check path / interval / timeout /         ``option httpchk`` + ``http-check send meth GET uri
thresholds / matcher                             PATH ver HTTP/1.1 hdr Host localhost``, ``http-check
                                                 expect (r)status``, ``timeout check``,
                                                 ``default-server inter I fall U rise H``
ALB does not retry a refused connect             ``retries 0`` + ``option redispatch``
DeregisterTargets                                runtime API (``stats socket ... level admin``);
                                                 the delay itself is applied by
                                                 :mod:`stickyws.twin.cluster`
===============================================  =================================================

Time scale: ``Layout.time_scale`` multiplies the health-check interval and timeout, and nothing
else. The ALB's minimum interval is 5 s, so a target needs >= 10 s to be marked healthy; tests
use a scale such as 0.05 (5 s -> 250 ms). Every other duration (idle timeout, stickiness,
deregistration delay) is rendered exactly as configured: pick short values in the settings
themselves, all of them are inside the AWS ranges.

Server slots: HAProxy 2.6 refuses ``cookie`` on servers added at run time, so the backend lists a
fixed number of slots (``s1``..``sN``); a slot whose ``port`` is ``None`` is rendered
``disabled`` (maintenance) and is given an address and made ready through the runtime API when
the twin adds a server. The slot name is the server's cookie value and its server id.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from stickyws.settings import Settings

#: Name of the frontend and of the backend (the "listener" and the "target group").
FRONTEND = "ws_listener"
BACKEND = "ws_targets"
#: The second target group of blue/green, linear and canary deployments (ECS's alternate target group).
ALTERNATE_BACKEND = "ws_alternate"
#: Key of the weight of :data:`ALTERNATE_BACKEND` in the weights map, and the weight's whole (basis points).
ALTERNATE_WEIGHT_KEY = ALTERNATE_BACKEND
WEIGHT_RANGE = 10_000
#: Cookie HAProxy inserts in ``lb_cookie`` mode: the ALB's own name.
LB_COOKIE_NAME = "AWSALB"
#: The ALB's cross-site copy of the stickiness cookie (``SameSite=None; Secure``).
LB_CORS_COOKIE_NAME = "AWSALBCORS"
#: Cookie the load balancer issues in ``app_cookie`` mode: the ALB's ``AWSALBAPP-<n>`` (it shards a
#: value above 4 KB over ``-0``..``-3``; the twin's value is a slot name, so ``-0`` is the only one).
APP_LB_COOKIE_NAME = "AWSALBAPP-0"
#: Address rendered for a slot that holds no server yet (it is ``disabled``; never connected).
UNUSED_SLOT_PORT = 1
#: Twin-only timeouts without an ALB setting, in seconds: TCP connect to a target, and the
#: slowloris guard (the whole request head must arrive within this, never more than the idle timeout).
CONNECT_TIMEOUT_S = 5.0
HTTP_REQUEST_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Slot:
    """One backend server line: ``name`` (also its cookie value) and its port, ``None`` if unused."""

    name: str
    port: int | None = None


@dataclass(frozen=True)
class Layout:
    """Where the twin listens and which servers it starts with.

    ``time_scale`` multiplies the health-check interval and timeout only (see the module doc);
    1.0 renders the settings as the ALB would use them. ``weights_map``: the path of the map file
    that holds the alternate backend's weight; with it the configuration has a second backend
    (:data:`ALTERNATE_BACKEND`, every slot in maintenance) and a weighted forward between the two
    (see :func:`render`); without it, one backend.
    """

    frontend_port: int
    stats_socket: str
    slots: Sequence[Slot]
    host: str = "127.0.0.1"
    time_scale: float = 1.0
    weights_map: str | None = None

    def __post_init__(self) -> None:
        if not self.slots:
            raise ValueError("a layout needs at least one server slot")
        if not 0 < self.time_scale <= 1:
            raise ValueError(f"time_scale={self.time_scale:g} must be in (0, 1]: it only shortens intervals")
        names = [s.name for s in self.slots]
        if len(set(names)) != len(names):
            raise ValueError(f"slot names must be unique: {names}")


def slot_names(count: int) -> list[str]:
    """The slot names ``s1``..``s<count>``."""
    return [f"s{i}" for i in range(1, count + 1)]


def duration(seconds: float) -> str:
    """A duration as HAProxy text: whole seconds as ``12s``, anything else in milliseconds (``250ms``)."""
    if seconds < 0:
        raise ValueError(f"negative duration {seconds}")
    if float(seconds).is_integer():
        return f"{int(seconds)}s"
    return f"{max(1, round(seconds * 1000))}ms"


def health_check_interval_s(settings: Settings, time_scale: float) -> float:
    """The interval HAProxy checks each server at: the setting times the time scale."""
    return float(settings["health_check_interval_s"]) * time_scale


def status_expectation(matcher: str) -> str:
    """``http-check expect`` arguments for an ALB matcher (``200``, ``200,204``, ``200-299``).

    A single code becomes ``status 200``; lists and ranges become an anchored ``rstatus`` regex.
    Raises ``ValueError`` for text that is not codes or ranges (the settings rule
    ``health-check-timing`` reports the same thing with a fix).
    """
    text = matcher.strip()
    if re.fullmatch(r"\d{3}", text):
        return f"status {text}"
    if not re.fullmatch(r"\d{3}(-\d{3})?(,\d{3}(-\d{3})?)*", text):
        raise ValueError(f"health_check_matcher={matcher!r} is not codes or ranges such as 200 or 200-299")
    parts: list[str] = []
    for item in text.split(","):
        lo, _, hi = item.partition("-")
        parts.extend(_range_regex(int(lo), int(hi or lo)))
    return "rstatus ^(" + "|".join(parts) + ")$"


def _range_regex(lo: int, hi: int) -> list[str]:
    """Regex alternatives matching exactly the three-digit codes ``lo``..``hi``, largest blocks first."""
    if lo > hi:
        raise ValueError(f"empty status range {lo}-{hi}")
    out: list[str] = []
    code = lo
    while code <= hi:
        size = 100 if code % 100 == 0 and code + 99 <= hi else 10 if code % 10 == 0 and code + 9 <= hi else 1
        free = len(str(size)) - 1  # trailing digits that take any value
        pos = 2 - free  # the digit that takes a range
        blocks = min((size * 10 - code % (size * 10)) // size, (hi - code + 1) // size)
        digits = str(code)
        first = int(digits[pos])
        varying = str(first) if blocks == 1 else f"[{first}-{first + blocks - 1}]"
        out.append(digits[:pos] + varying + "[0-9]" * free)
        code += blocks * size
    return out


def _stickiness_lines(settings: Settings) -> list[str]:
    if not settings["stickiness_enabled"]:
        return ["# stickiness disabled: plain round robin"]
    life = settings["stickiness_duration_s"]
    if settings["stickiness_type"] == "app_cookie":
        name = settings["app_cookie_name"]
        if not name:
            raise ValueError("stickiness_type=app_cookie needs app_cookie_name: set it to your application's cookie")
        return _app_cookie_lines(name, life)
    return [
        f"# lb_cookie stickiness: HAProxy inserts {LB_COOKIE_NAME} (opaque to clients), valid {life} s",
        f"cookie {LB_COOKIE_NAME} insert indirect nocache maxidle {duration(life)} maxlife {duration(life)}"
        f' attr "Max-Age={life}"',
        f"# {LB_COOKIE_NAME}'s value holds HAProxy's base64 dates, with '/' at times; a client that sends it back",
        "# in quotes (aiohttp's default cookie jar does) is read as if it had not",
        f"http-request replace-header Cookie '^(.*){LB_COOKIE_NAME}=\"([^\"]*)\"(.*)$' '\\1{LB_COOKIE_NAME}=\\2\\3'",
        *_cors_cookie_lines(life),
    ]


def _app_cookie_lines(name: str, life: int) -> list[str]:
    """The ALB's application-based stickiness: the app's cookie ``name`` starts it, ``AWSALBAPP-0`` carries the target.

    ``cookie AWSALBAPP-0`` without ``insert`` makes HAProxy route a request carrying it to the
    server whose ``cookie`` value it holds (another server when that one is down or in
    maintenance), and never insert it on its own. The twin issues it, as the ALB does, on a
    response that sets the application's cookie, and refreshes it (expiry and target) on every
    response to a request that carried it: after a redispatch it names the new server.
    """
    return [
        f"# app_cookie stickiness: the application's cookie {name} starts it, {APP_LB_COOKIE_NAME} carries the target:",
        f"# requests route on {APP_LB_COOKIE_NAME}; a response setting {name}, or answering a request that",
        f"# carried {APP_LB_COOKIE_NAME}, gets {APP_LB_COOKIE_NAME}=<its server>, valid {life} s",
        f"cookie {APP_LB_COOKIE_NAME}",
        f"http-request set-var(txn.stickyws_albapp) req.cook({APP_LB_COOKIE_NAME})",
        f'http-response add-header Set-Cookie "{APP_LB_COOKIE_NAME}=%[srv_name]; Max-Age={life}; Path=/"'
        f" if {{ srv_name -m found }} {{ res.cook({name}) -m found }} || {{ srv_name -m found }}"
        " { var(txn.stickyws_albapp) -m found }",
    ]


def _cors_cookie_lines(life: int) -> list[str]:
    """The ALB's second cookie: ``AWSALBCORS``, same value, ``SameSite=None; Secure``.

    A browser sends a cookie without ``SameSite`` only to its own site, so a page on another site
    (``http://localhost:P`` to ``ws://127.0.0.1:T``) would lose stickiness with ``AWSALB`` alone.
    Every response from a server sets ``AWSALBCORS`` to that server's cookie value; a request that
    carries only ``AWSALBCORS`` is routed as if it carried ``AWSALB`` with the same value.
    """
    return [
        f"# {LB_CORS_COOKIE_NAME}: the cross-site twin of {LB_COOKIE_NAME} (SameSite=None; Secure), as the ALB sets it",
        f'http-request set-header Cookie "%[req.hdr(Cookie)]; {LB_COOKIE_NAME}=%[req.cook({LB_CORS_COOKIE_NAME})]"'
        f" if {{ req.cook({LB_CORS_COOKIE_NAME}) -m found }} !{{ req.cook({LB_COOKIE_NAME}) -m found }}",
        f'http-response add-header Set-Cookie "{LB_CORS_COOKIE_NAME}=%[srv_name]; Max-Age={life}; Path=/;'
        ' SameSite=None; Secure" if { srv_name -m found }',
    ]


def _server_line(slot: Slot, host: str, with_cookie: bool) -> str:
    cookie = f" cookie {slot.name}" if with_cookie else ""
    if slot.port is None:
        return f"server {slot.name} {host}:{UNUSED_SLOT_PORT} check{cookie} disabled"
    return f"server {slot.name} {host}:{slot.port} check{cookie}"


def _section(header: str, lines: Iterable[str]) -> list[str]:
    return [header, *(f"    {line}" if line else "" for line in lines), ""]


def _weighted_forward_lines(weights_map: str) -> list[str]:
    """The production rule as a weighted forward: each NEW request picks a backend first, then a server.

    ``rand`` draws per request; the alternate backend's weight (0..:data:`WEIGHT_RANGE`) is read from
    ``weights_map`` and changed through the runtime API (``set map``). The stickiness cookie is
    looked at only inside the chosen backend, as on the ALB: a request carrying a cookie of a
    server the other backend holds is load-balanced (the cookie names no usable server there).
    """
    return [
        "# production rule: a weighted forward between the two target groups; the alternate's weight",
        f"# (of {WEIGHT_RANGE}) is in the map, set at run time; the cookie counts only inside the chosen backend",
        f"http-request set-var(txn.alternate_weight) str({ALTERNATE_WEIGHT_KEY}),map_str_int({weights_map},0)",
        f"use_backend {ALTERNATE_BACKEND} if {{ rand({WEIGHT_RANGE}),sub(txn.alternate_weight) lt 0 }}",
    ]


def render(settings: Settings, layout: Layout) -> str:
    """The complete ``haproxy.cfg`` text for ``settings`` laid out as ``layout``.

    Raises ``ValueError`` when the settings cannot be rendered (HTTP/2 on, app_cookie without a
    name, a malformed matcher); run ``settings.check()`` first for the full list of problems.
    """
    if settings["http2_enabled"]:
        raise ValueError("http2_enabled=true cannot be served to WebSocket clients: set http2_enabled=false")
    idle = duration(settings["idle_timeout_s"])
    scale = layout.time_scale
    inter = duration(health_check_interval_s(settings, scale))
    check_timeout = duration(float(settings["health_check_timeout_s"]) * scale)
    http_request = duration(min(HTTP_REQUEST_TIMEOUT_S, float(settings["idle_timeout_s"])))
    server_cookies = bool(settings["stickiness_enabled"])  # both stickiness types route on a cookie per server
    lines = [
        "# Rendered by stickyws.twin.haproxy_config from the stickyws settings model: do not edit,",
        "# change the settings and render again.",
        f"# time scale {scale:g}: health-check interval and timeout are scaled, nothing else.",
        "",
    ]
    lines += _section(
        "global",
        [
            "# runtime API: the twin's DeregisterTargets (maint, shutdown sessions) and target health",
            f"stats socket {layout.stats_socket} mode 660 level admin",
        ],
    )
    lines += _section(
        "defaults",
        [
            "mode http",
            "# the ALB does not retry a refused connect: neither does the twin",
            "retries 0",
            "option redispatch",
            "option forwardfor",
            f"timeout connect {duration(CONNECT_TIMEOUT_S)}",
            "# idle_timeout_s: HTTP phase on both sides, then the upgraded tunnel",
            f"timeout client {idle}",
            f"timeout server {idle}",
            f"timeout tunnel {idle}",
            "# slowloris guard: the request head must arrive in time",
            f"timeout http-request {http_request}",
            f"timeout check {check_timeout}",
        ],
    )
    lines += _section(
        f"frontend {FRONTEND}",
        [
            "# HTTP/1.1 only (http2_enabled=false): no alpn h2, no proto h2",
            f"bind {layout.host}:{layout.frontend_port}",
            *(_weighted_forward_lines(layout.weights_map) if layout.weights_map else []),
            f"default_backend {BACKEND}",
        ],
    )

    def backend(slots: Iterable[Slot]) -> list[str]:
        return [
            "balance roundrobin",
            *_stickiness_lines(settings),
            "option httpchk",
            f"http-check send meth GET uri {settings['health_check_path']} ver HTTP/1.1 hdr Host localhost",
            f"http-check expect {status_expectation(settings['health_check_matcher'])}",
            f"default-server inter {inter} fall {settings['unhealthy_threshold_count']}"
            f" rise {settings['healthy_threshold_count']}",
            *(_server_line(slot, layout.host, server_cookies) for slot in slots),
        ]

    lines += _section(f"backend {BACKEND}", backend(layout.slots))
    if layout.weights_map:
        unused = [Slot(slot.name) for slot in layout.slots]
        lines += _section(
            f"backend {ALTERNATE_BACKEND}",
            ["# the alternate target group: the same slots, each registered here by a deployment", *backend(unused)],
        )
    return "\n".join(lines).rstrip("\n") + "\n"
