"""Your own server in the twin: the seed article's Node server has its clients cut, the reference server's move."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections import defaultdict
from pathlib import Path

import aiohttp
import pytest

from stickyws import keys, protocol
from stickyws.client.connection import with_query
from stickyws.localproc import pid_alive
from stickyws.twin.cluster import DeregisterReport, TwinCluster, literal
from tests.e2e.support import E2E_SETTINGS, TIME_SCALE, client_session, require_binaries, run

pytestmark = [pytest.mark.haproxy, pytest.mark.redis]

NODE_PEER = Path(__file__).resolve().parents[2] / "bench" / "node-peer"
CLIENTS = 12
DELAY_S = float(E2E_SETTINGS["deregistration_delay_s"])
#: The Node peer reads everything from PEER_* variables; the twin fills the placeholders per server.
NODE_ENV = {
    "PEER_PORT": "{port}",
    "PEER_SERVER_ID": "{server_id}",
    "PEER_REDIS_URL": "{redis_url}",
    "PEER_JWT_SECRET": "{jwt_secret}",
    "PEER_JWT_AUDIENCE": E2E_SETTINGS["jwt_audience"],
    # The peer replaces "{id}" in this template with the user id.
    "PEER_USER_KEY_TEMPLATE": literal(keys.user_key("USER")).replace("USER", literal("{id}")),
    "PEER_HEARTBEAT_KEY": keys.heartbeat_key("{server_id}"),
    "PEER_ROUTING_TTL_S": str(E2E_SETTINGS["routing_ttl_s"]),
    "PEER_HEARTBEAT_INTERVAL_S": str(E2E_SETTINGS["heartbeat_interval_s"]),
    "PEER_HEARTBEAT_TTL_S": str(E2E_SETTINGS["heartbeat_ttl_s"]),
    "PEER_PING_INTERVAL_S": str(E2E_SETTINGS["ping_interval_s"]),
}


async def _hold_and_deregister(twin: TwinCluster, user_prefix: str) -> tuple[DeregisterReport, int, list[int | None]]:
    """Open CLIENTS connections, deregister the server with the most, return its report and its clients' closes.

    Returns the report, how many clients that server held, and each of those clients' close codes
    (1006: the connection ended without a close frame, as a cut one does).
    """
    async with client_session() as session:
        by_server: dict[str, list[aiohttp.ClientWebSocketResponse]] = defaultdict(list)
        sockets = []
        for i in range(CLIENTS):
            url = with_query(twin.url, {"token": twin.token(f"{user_prefix}-{i}")})
            ws = await session.ws_connect(url, protocols=(protocol.SUBPROTOCOL,), heartbeat=None)
            frame = json.loads((await ws.receive(timeout=5)).data)
            assert frame["type"] == "connected"
            by_server[str(frame["serverId"])].append(ws)
            sockets.append(ws)
        name, held = max(by_server.items(), key=lambda item: len(item[1]))

        async def until_closed(ws: aiohttp.ClientWebSocketResponse) -> int | None:
            while True:
                message = await ws.receive(timeout=DELAY_S + 5)
                if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                    return message.data if message.type is aiohttp.WSMsgType.CLOSE else ws.close_code

        closes = asyncio.gather(*(until_closed(ws) for ws in held))
        report = await asyncio.to_thread(twin.deregister, name)
        codes = list(await closes)
        for ws in sockets:
            await ws.close()
        return report, len(held), codes


def test_node_server_clients_are_cut_at_the_delay_reference_clients_told_to_reconnect(twin: TwinCluster) -> None:
    """Deregistering a Node peer cuts all its clients after the whole delay; the reference server tells all to move."""
    require_binaries()
    assert shutil.which("node") is not None, "node not found: install Node.js 20 (the CDK CLI needs it too)"
    assert (NODE_PEER / "node_modules" / "ws").is_dir(), "run make setup (npm ci in bench/node-peer)"

    node_twin = TwinCluster(
        E2E_SETTINGS,
        servers=2,
        time_scale=TIME_SCALE,
        server_cmd=["node", str(NODE_PEER / "server.js")],
        server_env=NODE_ENV,
    )
    with node_twin:
        pids = node_twin.pids()
        node, node_held, node_closes = run(_hold_and_deregister(node_twin, "node-user"), timeout_s=30)
    assert all(not pid_alive(pid) for pid in pids)

    reference, ref_held, ref_closes = run(_hold_and_deregister(twin, "ref-user"), timeout_s=30)

    print(f"node peer: {node.render()}\nreference: {reference.render()}")
    assert node_held >= CLIENTS // 2  # round robin over 2 (Node) and 3 (reference) servers
    assert ref_held >= CLIENTS // 3
    # The Node peer reads no drain notice: its clients stay until the delay runs out, then are cut.
    assert (node.connections_at_start, node.connections_cut, node.closed_before_cut, node.told_to_reconnect) == (
        node_held,
        node_held,
        0,
        0,
    )
    assert DELAY_S <= node.drained_s < DELAY_S + 1.0
    assert node_closes == [aiohttp.WSCloseCode.ABNORMAL_CLOSURE] * node_held  # 1006: no close frame, cut
    assert node.exit_code == 0  # SIGTERM, after the cut
    # The reference server reads the notice: every client is told to reconnect and closed (1012) in the drain window.
    assert (reference.connections_at_start, reference.connections_cut, reference.told_to_reconnect) == (
        ref_held,
        0,
        ref_held,
    )
    assert reference.closed_before_cut == ref_held
    assert reference.drained_s < E2E_SETTINGS["drain_window_s"] + 1.0
    assert ref_closes == [protocol.CLOSE_SERVICE_RESTART] * ref_held
