"""The browser client in headless Chromium through the twin: stickiness, migration, and refusals it can act on."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from stickyws.twin.browser import DEMO_PATH, demo_url
from stickyws.twin.cluster import TwinCluster

pytestmark = pytest.mark.haproxy
BOUND_S = 30.0

#: Open one client with (url, token, options), record its events until "close" or ``waitMs``, then
#: wait ``afterMs`` more (a retry loop would show up there) and return every event with its time.
RUN_CLIENT = """
const [url, token, options, waitMs, afterMs] = arguments;
const done = arguments[arguments.length - 1];
import("/stickyws-client.js").then(({ StickyClient }) => {
  const events = [];
  const t0 = performance.now();
  const client = new StickyClient(url, { token, ...options });
  for (const type of ["open", "reconnecting", "error", "close"]) {
    client.addEventListener(type, (e) => events.push({ type, t: performance.now() - t0, detail: e.detail }));
  }
  const finish = () => setTimeout(() => { client.close(); done(events); }, afterMs);
  client.addEventListener("close", finish, { once: true });
  setTimeout(() => { if (client.state !== "closed") done(events); }, waitMs);
}, (err) => done([{ type: "import-failed", detail: String(err) }]));
"""

#: Connect and close ``count`` times in a row from one page; returns each connection's server.
RECONNECT_N = """
const [url, token, count] = arguments;
const done = arguments[arguments.length - 1];
import("/stickyws-client.js").then(async ({ StickyClient }) => {
  const servers = [];
  for (let i = 0; i < count; i++) {
    const client = new StickyClient(url, { token });
    const open = await new Promise((resolve) => {
      client.addEventListener("open", (e) => resolve(e.detail), { once: true });
    });
    servers.push(open.serverId);
    client.close();
  }
  done(servers);
});
"""

STATE = """
return JSON.parse(JSON.stringify((window.stickyDemo ? window.stickyDemo.clients : []).map((c) => ({
  user: c.user, servers: c.servers, sessions: c.sessions, acks: c.acks, sent: c.sent,
  echoes: c.messages.map((m) => m.data.n), errors: c.events.filter((e) => e.type === "error"),
}))));
"""


def _wait(check: Callable[[], Any], what: str, timeout_s: float = BOUND_S) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout_s:g} s")
        time.sleep(0.05)


def _page(driver: Any, url: str) -> None:
    driver.get(url)
    _wait(lambda: driver.execute_script("return document.readyState") == "complete", "page loaded")


def test_one_profile_sticks_to_one_server_for_20_reconnects(twin: TwinCluster, new_profile: Callable[[], Any]) -> None:
    """The AWSALB cookie set on the page load keeps 20 consecutive connections of one profile on the
    server that served the page, and the AWSALBCORS twin carries the same value."""
    driver = new_profile()
    _page(driver, twin.http_url + DEMO_PATH)
    servers = driver.execute_async_script(RECONNECT_N, twin.url, twin.token("sticky"), 20)
    assert len(servers) == 20
    assert len(set(servers)) == 1
    cookies = {c["name"]: c for c in driver.get_cookies()}
    assert cookies["AWSALB"]["value"].split("|")[0] == servers[0]
    assert cookies["AWSALBCORS"]["value"] == servers[0]
    assert cookies["AWSALBCORS"]["sameSite"] == "None"
    assert cookies["AWSALBCORS"]["secure"] is True


def test_fresh_profiles_are_spread_over_the_servers(twin: TwinCluster, new_profile: Callable[[], Any]) -> None:
    """Three fresh profiles (no cookie yet) land on the three servers, one each (round robin)."""
    servers = []
    for i in range(3):
        driver = new_profile()
        _page(driver, twin.http_url + DEMO_PATH)
        servers += driver.execute_async_script(RECONNECT_N, twin.url, twin.token(f"fresh{i}"), 1)
    assert sorted(servers) == sorted(twin.serving())


def test_demo_page_clients_move_on_deregister_with_every_message_acked_and_echoed_once(
    twin: TwinCluster, new_profile: Callable[[], Any]
) -> None:
    """Two demo-page clients send a numbered message every 50 ms while their server is deregistered:
    both move to another server with the same session, each message is acknowledged once and its
    echo received once, in order."""
    driver = new_profile()
    tokens = {"alice": twin.token("alice"), "bob": twin.token("bob")}
    _page(driver, demo_url(twin.http_url, tokens) + "&sendMs=50")
    first = _wait(lambda: (s := driver.execute_script(STATE)) and all(c["servers"] for c in s) and s, "both open")
    server = first[0]["servers"][0]
    assert [c["servers"] for c in first] == [[server], [server]]  # one profile: one cookie, one server
    deregistering = threading.Thread(target=twin.deregister, args=(server,), daemon=True)
    deregistering.start()
    try:
        moved = _wait(
            lambda: (s := driver.execute_script(STATE)) and all(len(c["servers"]) == 2 for c in s) and s, "both moved"
        )
        sent_at_move = [c["sent"] for c in moved]
        _wait(
            lambda: all(c["sent"] >= n + 10 for c, n in zip(driver.execute_script(STATE), sent_at_move, strict=True)),
            "ten more messages each after the move",
        )
        driver.execute_script("window.stickyDemo.clients.forEach((c) => clearInterval(c.timer))")
        final = _wait(
            lambda: (
                (s := driver.execute_script(STATE))
                and all(len(c["acks"]) == c["sent"] and len(c["echoes"]) == c["sent"] for c in s)
                and s
            ),
            "every message acknowledged and echoed",
        )
    finally:
        deregistering.join(timeout=BOUND_S)
    for client in final:
        sent = client["sent"]
        assert sorted(client["acks"]) == list(range(1, sent + 1))
        assert client["echoes"] == list(range(1, sent + 1))
        assert client["servers"][0] == server
        assert client["servers"][1] != server
        assert client["sessions"][0] == client["sessions"][1]
        assert client["errors"] == []


def test_an_expired_token_ends_in_one_clear_error_and_no_retry(
    twin: TwinCluster, new_profile: Callable[[], Any]
) -> None:
    """A refused handshake (403 invalid_token, seen by the page as a bare 1006) is explained by the
    pre-flight: one error event naming the reason, a close, and no reconnect attempt."""
    driver = new_profile()
    _page(driver, twin.http_url + DEMO_PATH)
    expired = twin.token("late", ttl_s=-60)
    events = driver.execute_async_script(RUN_CLIENT, twin.url, expired, {}, 15000, 1500)
    assert [e["type"] for e in events] == ["error", "close"]
    assert events[0]["detail"] == {"code": "invalid_token", "message": "token expired", "status": 403, "fatal": True}
    assert events[1]["detail"]["error"] is True


def test_a_forbidden_origin_ends_in_one_error_naming_allowed_origins(
    twin: TwinCluster, new_profile: Callable[[], Any]
) -> None:
    """A page on an origin the servers do not allow (a server's own port) gets one origin_not_allowed
    error that names the origin and the allowed_origins setting, and no retry loop."""
    driver = new_profile()
    name = twin.serving()[0]
    origin = f"http://127.0.0.1:{twin.procs[name].port}"
    _page(driver, origin + DEMO_PATH)
    events = driver.execute_async_script(RUN_CLIENT, twin.url, twin.token("elsewhere"), {}, 15000, 1500)
    assert [e["type"] for e in events] == ["error", "close"]
    error = events[0]["detail"]
    assert (error["code"], error["status"], error["fatal"]) == ("origin_not_allowed", 403, True)
    assert error["message"].startswith(f"origin '{origin}' is not allowed: add it to the allowed_origins setting")


def test_a_503_is_retried_after_retry_after(twin: TwinCluster, new_profile: Callable[[], Any]) -> None:
    """A draining server refuses the handshake with 503 + Retry-After: 1; the client waits at least
    that second before the next attempt, and its retry budget ends in one clear error."""
    added = twin.add()
    try:
        twin.publish_drain_notice(added.name)
        health = f"http://127.0.0.1:{added.port}/health"

        def draining() -> bool:
            try:
                with urllib.request.urlopen(health, timeout=2) as resp:
                    return bool(json.load(resp)["draining"])
            except urllib.error.HTTPError as err:
                return bool(json.load(err)["draining"])

        _wait(draining, f"{added.name} draining")
        driver = new_profile()
        _page(driver, twin.http_url + DEMO_PATH)
        target = f"ws://127.0.0.1:{added.port}/ws"
        options = {"maxRetries": 1, "reconnectBaseMs": 50}
        events = driver.execute_async_script(RUN_CLIENT, target, twin.token("patient"), options, 15000, 500)
    finally:
        twin.deregister(added.name)
    assert [e["type"] for e in events] == ["reconnecting", "error", "close"]
    plan, error = events[0], events[1]
    assert (plan["detail"]["status"], plan["detail"]["reason"], plan["detail"]["hintMs"]) == (503, "draining", 1000)
    assert plan["detail"]["delayMs"] >= 1000
    assert error["t"] - plan["t"] >= 1000
    assert error["detail"]["code"] == "retry_budget_exhausted"
    assert error["detail"]["message"].startswith("gave up after 2 failed connection attempts (draining")


def test_a_cross_site_page_keeps_stickiness_through_awsalbcors(
    twin: TwinCluster, new_profile: Callable[..., Any]
) -> None:
    """A page on http://localhost:P opening ws://127.0.0.1:P (another site) in a profile that allows
    third-party cookies keeps 20 connections on one server: the browser refuses AWSALB (no SameSite,
    so Lax) from the cross-site 101 but stores and sends AWSALBCORS (SameSite=None; Secure)."""
    driver = new_profile(third_party_cookies=True)
    _page(driver, twin.http_url.replace("127.0.0.1", "localhost") + DEMO_PATH)
    servers = driver.execute_async_script(RECONNECT_N, twin.url, twin.token("cross-site"), 20)
    assert len(servers) == 20
    assert len(set(servers)) == 1
    jar = {(c["domain"], c["name"]): c["value"] for c in driver.execute_cdp_cmd("Network.getAllCookies", {})["cookies"]}
    assert jar[("127.0.0.1", "AWSALBCORS")] == servers[0]
    assert ("127.0.0.1", "AWSALB") not in jar
