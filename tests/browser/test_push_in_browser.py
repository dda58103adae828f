"""Pushes and topic publications in headless Chromium through a rolling deploy of the twin."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from stickyws.publish import Publisher
from stickyws.twin.browser import DEMO_PATH
from stickyws.twin.cluster import TwinCluster
from tests.browser.test_chromium import BOUND_S, _page, _wait

pytestmark = pytest.mark.haproxy

#: Two clients in one page: each subscribes to the topic and sends a numbered message every ``sendMs``;
#: every ack, message and publication is recorded in ``window.pushTest``.
START = """
const [url, tokens, topic, sendMs] = arguments;
const done = arguments[arguments.length - 1];
import("/stickyws-client.js").then(({ StickyClient }) => {
  window.pushTest = tokens.map(([user, token]) => {
    const client = new StickyClient(url, { token });
    const st = { user, servers: [], sessions: [], acks: [], dupAcks: 0, sent: 0, pushes: [], seqs: [],
                 pubs: [], offsets: [], errors: [], lost: 0, subscribed: false };
    client.addEventListener("open", (e) => {
      st.servers.push(e.detail.serverId);
      st.sessions.push(e.detail.sessionId);
    });
    client.addEventListener("message", (e) => {
      if (e.detail.data && e.detail.data.push !== undefined) {
        st.pushes.push(e.detail.data.push);
        st.seqs.push(e.detail.seq);
      }
    });
    client.addEventListener("publication", (e) => { st.pubs.push(e.detail.data.n); st.offsets.push(e.detail.offset); });
    client.addEventListener("unrecoverable", () => { st.lost += 1; });
    client.addEventListener("gap", () => { st.lost += 1; });
    client.addEventListener("error", (e) => st.errors.push(e.detail));
    client.subscribe(topic).then(() => { st.subscribed = true; });
    st.timer = setInterval(() => {
      const n = ++st.sent;
      client.send({ n }).then((ack) => { if (ack.duplicate) st.dupAcks += 1; st.acks.push(n); });
    }, sendMs);
    return { client, st };
  });
  done(true);
});
"""
STATE = "return JSON.parse(JSON.stringify(window.pushTest.map((t) => { const { timer, ...st } = t.st; return st; })));"
STOP = "window.pushTest.forEach((t) => clearInterval(t.st.timer));"


def test_browser_clients_get_every_push_and_publication_once_through_a_rolling_deploy(
    twin: TwinCluster, new_profile: Any
) -> None:
    """While the twin replaces every server, two page clients keep sending numbered messages and a backend
    pushes to both users and publishes to their topic: every message is acked once, every push and every
    publication arrives once and in order, and nothing is reported lost."""
    driver = new_profile()
    _page(driver, twin.http_url + DEMO_PATH)
    users = [("pusha", twin.token("pusha")), ("pushb", twin.token("pushb"))]
    driver.execute_async_script(START, twin.url, users, "browser-news", 100)
    _wait(lambda: all(c["subscribed"] and c["servers"] for c in driver.execute_script(STATE)), "both subscribed")
    stop = threading.Event()
    published: list[int] = []
    pushed: dict[str, list[int]] = {"pusha": [], "pushb": []}

    async def backend() -> None:
        async with Publisher(twin.redis.url, settings=twin.settings) as pub:
            n = 0
            while not stop.is_set():
                for user, _ in users:
                    result = await pub.send_to_user(user, {"push": n})
                    assert result.status in ("sent", "stored")
                    pushed[user].append(n)
                await pub.publish("browser-news", {"n": n})
                published.append(n)
                n += 1
                await asyncio.sleep(0.05)

    producer = threading.Thread(target=asyncio.run, args=(backend(),), daemon=True)
    producer.start()
    try:
        before = set(twin.serving())
        twin.rolling_deploy()
        assert not set(twin.serving()) & before
    finally:
        stop.set()
        producer.join(timeout=BOUND_S)
    driver.execute_script(STOP)

    def complete() -> list[dict[str, Any]] | None:
        state = driver.execute_script(STATE)
        ok = all(
            len(c["acks"]) == c["sent"]
            and len(c["pushes"]) >= len(pushed[c["user"]])
            and len(c["pubs"]) >= len(published)
            for c in state
        )
        return state if ok else None

    final = _wait(complete, "every ack, push and publication")
    for client in final:
        assert sorted(client["acks"]) == list(range(1, client["sent"] + 1))
        assert client["pushes"] == pushed[client["user"]]
        assert client["seqs"] == sorted(set(client["seqs"]))
        assert client["pubs"] == published
        assert client["offsets"] == list(range(client["offsets"][0], client["offsets"][0] + len(published)))
        assert client["lost"] == 0
        assert client["errors"] == []
        assert len(client["servers"]) >= 2  # the deploy moved it
        assert len(set(client["sessions"])) == 1  # one session throughout
