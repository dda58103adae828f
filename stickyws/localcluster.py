"""A real Redis Cluster on loopback: N primaries with replicas, formed, failed over and stopped by PID.

:class:`LocalCluster` starts ``primaries * (1 + replicas)`` ``redis-server --cluster-enabled yes``
processes on ports the OS picks (client port and cluster-bus port each, so nothing depends on
``port + 10000``), joins them with ``redis-cli --cluster create ... --cluster-replicas N
--cluster-yes`` and waits until every node reports ``cluster_state:ok`` and every replica's link to
its primary is up. With ``primaries=1`` (no replicas) there is nothing to join: the single node is
given every slot itself (``CLUSTER ADDSLOTSRANGE 0 16383``), a one-shard cluster that speaks the
cluster protocol (slot map, sharded pub/sub), for comparisons against more shards.
:meth:`LocalCluster.kill_primary` sends SIGKILL to a primary (a crash, not a shutdown)
and :meth:`LocalCluster.wait_for_failover` waits until a replica owns its slots; with the
short default ``cluster-node-timeout`` (1 s) that takes 2-4 s. Every process is stopped by the PID
this module started, never by name.

Needs the ``redis-server`` and ``redis-cli`` binaries (Debian package ``redis-server``, 7.0+) and
redis-py for the state queries.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from stickyws.localproc import LocalProcessError, free_port, stop_pid, wait_for_port

#: cluster-node-timeout of the local nodes: how long a node may be silent before it counts as failing.
DEFAULT_NODE_TIMEOUT_MS = 1000
#: Hash slots of a Redis Cluster.
SLOTS = 16384
_T = TypeVar("_T")


@dataclass
class ClusterNode:
    """One ``redis-server`` of the cluster: its ports, its process and its working directory."""

    port: int
    bus_port: int
    directory: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``."""
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """PID of the running process, or ``None``."""
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    @property
    def alive(self) -> bool:
        """The process is running."""
        return self.pid is not None


@dataclass(frozen=True)
class NodeState:
    """One line of ``CLUSTER NODES`` as seen by a live node."""

    node_id: str
    port: int
    role: str  # "master" or "slave"
    primary_id: str | None
    failed: bool
    slots: int


@dataclass(frozen=True)
class Failover:
    """What :meth:`LocalCluster.wait_for_failover` observed."""

    killed_port: int
    new_primary_port: int
    seconds: float


class LocalCluster:
    """A Redis Cluster of ``primaries`` shards with ``replicas`` replicas each, on 127.0.0.1.

    :param primaries: shards, 1 or 3-16 (``redis-cli --cluster create`` needs at least 3 primaries; one
        shard is formed without it, and takes no replicas).
    :param replicas: replicas per primary, 0-3 (0 with ``primaries=1``).
    :param node_timeout_ms: ``cluster-node-timeout``, 100-60000 ms. Default 1000.
    """

    def __init__(
        self,
        *,
        primaries: int = 3,
        replicas: int = 1,
        node_timeout_ms: int = DEFAULT_NODE_TIMEOUT_MS,
        server_binary: str = "redis-server",
        cli_binary: str = "redis-cli",
    ) -> None:
        if primaries != 1 and not 3 <= primaries <= 16:
            raise ValueError(f"primaries={primaries} is outside 1 or 3-16: redis-cli --cluster create needs 3 or more")
        if not 0 <= replicas <= 3:
            raise ValueError(f"replicas={replicas} is outside 0-3")
        if primaries == 1 and replicas:
            raise ValueError(f"replicas={replicas} with primaries=1: a one-shard cluster is formed without replicas")
        if not 100 <= node_timeout_ms <= 60_000:
            raise ValueError(f"node_timeout_ms={node_timeout_ms} is outside 100-60000")
        self.primaries, self.replicas, self.node_timeout_ms = primaries, replicas, node_timeout_ms
        self._server = server_binary
        self._cli = cli_binary
        self._root = Path(tempfile.mkdtemp(prefix="stickyws-cluster-"))
        self.nodes: list[ClusterNode] = []
        self._replicas_of: dict[int, set[int]] = {}

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self, timeout_s: float = 30.0) -> LocalCluster:
        """Start every node, create the cluster and wait until it is ``ok`` with all replicas in sync."""
        for binary in (self._server, self._cli):
            if shutil.which(binary) is None:
                raise LocalProcessError(f"{binary} not found: install the Debian package redis-server (7.0 or newer)")
        deadline = time.monotonic() + timeout_s
        try:
            for i in range(self.primaries * (1 + self.replicas)):
                directory = self._root / f"node{i}"
                directory.mkdir()
                node = ClusterNode(port=free_port(), bus_port=free_port(), directory=directory)
                self.nodes.append(node)
                self._spawn(node)
            for node in self.nodes:
                wait_for_port(node.port, max(0.1, deadline - time.monotonic()))
            if self.primaries == 1:
                self._query(self.nodes[0], "CLUSTER", "ADDSLOTSRANGE", "0", str(SLOTS - 1))
            else:
                self._create(max(1.0, deadline - time.monotonic()))
            self.wait_until_ok(max(1.0, deadline - time.monotonic()))
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every node by its PID and delete the working directories (idempotent)."""
        for node in self.nodes:
            if node.proc is not None:
                stop_pid(node.proc)
        shutil.rmtree(self._root, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pids(self) -> list[int]:
        """PIDs of the nodes still running."""
        return [pid for pid in (n.pid for n in self.nodes) if pid is not None]

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        """``(host, port)`` of every node, for cluster clients."""
        return [("127.0.0.1", n.port) for n in self.nodes]

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT`` of the first live node (a cluster client discovers the rest)."""
        node = next((n for n in self.nodes if n.alive), self.nodes[0])
        return f"redis://127.0.0.1:{node.port}"

    # -- state -------------------------------------------------------------------------------------

    def cluster_info(self, node: ClusterNode) -> dict[str, str]:
        """``CLUSTER INFO`` of ``node`` as a dict."""
        text = self._query(node, "CLUSTER", "INFO")
        return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)

    def topology(self, via: ClusterNode | None = None) -> list[NodeState]:
        """``CLUSTER NODES`` as seen by ``via`` (default: the first live node)."""
        node = via or self._live_node()
        states = []
        for line in self._query(node, "CLUSTER", "NODES").splitlines():
            parts = line.split()
            if len(parts) < 8:
                continue
            flags = parts[2].split(",")
            slots = 0
            for spec in parts[8:]:
                if spec.startswith("["):
                    continue  # a slot in migration
                lo, _, hi = spec.partition("-")
                slots += int(hi or lo) - int(lo) + 1
            states.append(
                NodeState(
                    node_id=parts[0],
                    port=int(parts[1].split("@")[0].rsplit(":", 1)[1]),
                    role="master" if "master" in flags else "slave",
                    primary_id=None if parts[3] == "-" else parts[3],
                    failed="fail" in flags or "fail?" in flags,
                    slots=slots,
                )
            )
        return states

    def primary_nodes(self) -> list[ClusterNode]:
        """The live nodes that hold slots as primaries, by port."""
        ports = {s.port for s in self.topology() if s.role == "master" and s.slots and not s.failed}
        return [n for n in self.nodes if n.port in ports and n.alive]

    def wait_until_ok(self, timeout_s: float = 20.0) -> None:
        """Until every live node says ``cluster_state:ok``, all 16384 slots are served and replicas are in sync."""

        def ready() -> bool:
            live = [n for n in self.nodes if n.alive]
            if not all(self.cluster_info(n).get("cluster_state") == "ok" for n in live):
                return False
            states = [s for s in self.topology() if s.port in {n.port for n in live}]
            if sum(s.slots for s in states if s.role == "master") != SLOTS:
                return False
            replicas = [n for n in live if n.port in {s.port for s in states if s.role == "slave"}]
            return all("master_link_status:up" in self._query(n, "INFO", "replication") for n in replicas)

        self._wait(ready, timeout_s, "the cluster to reach cluster_state:ok with its replicas in sync")

    # -- faults ------------------------------------------------------------------------------------

    def kill_primary(self, node: ClusterNode | None = None) -> ClusterNode:
        """SIGKILL ``node`` (default: the first primary) and return it; it stays down until :meth:`restart`."""
        target = node or self.primary_nodes()[0]
        if target.proc is None or target.proc.poll() is not None:
            raise LocalProcessError(f"node {target.address} is not running")
        states = self.topology()
        target_id = next(s.node_id for s in states if s.port == target.port)
        self._replicas_of[target.port] = {s.port for s in states if s.primary_id == target_id}
        target.proc.kill()
        target.proc.wait(timeout=5)
        return target

    def wait_for_failover(self, killed: ClusterNode, timeout_s: float = 20.0) -> Failover:
        """Until a former replica of ``killed`` serves its slots and every live node says ``cluster_state:ok``."""
        started = time.monotonic()
        candidates = self._replicas_of.get(killed.port, set())
        if not candidates:
            raise LocalProcessError(f"{killed.address} was not killed by kill_primary or had no replica")
        promoted: list[int] = []

        def taken_over() -> bool:
            live = [n for n in self.nodes if n.alive]
            new = [
                s.port
                for s in self.topology(live[0])
                if s.port in candidates and s.role == "master" and s.slots and not s.failed
            ]
            if not new or not all(self.cluster_info(n).get("cluster_state") == "ok" for n in live):
                return False
            promoted[:] = new
            return True

        self._wait(taken_over, timeout_s, f"a replica to take over the slots of {killed.address}")
        return Failover(killed.port, promoted[0], time.monotonic() - started)

    def restart(self, node: ClusterNode, timeout_s: float = 20.0) -> None:
        """Start a killed node again on its ports; it rejoins (as a replica of whoever took over)."""
        if node.alive:
            return
        self._spawn(node)
        wait_for_port(node.port, timeout_s)
        self.wait_until_ok(timeout_s)

        # It comes back believing it is still a primary (its nodes.conf) and turns replica once the
        # cluster tells it otherwise: return only then, so the next user sees the settled topology.
        def replica_everywhere() -> bool:
            return all(
                next(s for s in self.topology(n) if s.port == node.port).role == "slave" for n in self.nodes if n.alive
            )

        self._wait(replica_everywhere, timeout_s, f"every node to see {node.address} as a replica")

    # -- internals ---------------------------------------------------------------------------------

    def key_on(self, port: int, prefix: str) -> str:
        """A key (``prefix`` + n) whose slot the primary on ``port`` serves now."""
        import redis
        from redis.crc import key_slot

        node = redis.Redis(host="127.0.0.1", port=port)
        try:
            slots: Any = node.execute_command("CLUSTER", "SLOTS")  # type: ignore[no-untyped-call]
        finally:
            node.close()
        ranges = [(lo, hi) for lo, hi, owner, *_ in slots if int(owner[1]) == port]
        for i in range(100_000):
            slot = key_slot(f"{prefix}{i}".encode())
            if any(lo <= slot <= hi for lo, hi in ranges):
                return f"{prefix}{i}"
        raise LocalProcessError(f"no key with prefix {prefix!r} on port {port}")

    def migrate(self, key: str, src: int, dst: int, *, finish: bool) -> None:
        """Move ``key``'s slot from the primary on ``src`` to the one on ``dst`` (``MIGRATE`` the key):
        with ``finish`` every primary assigns the slot to ``dst`` (clients get ``MOVED``), else the slot
        stays half-migrated (``ASK``) until :meth:`assign`."""
        import redis

        a, b = redis.Redis(host="127.0.0.1", port=src), redis.Redis(host="127.0.0.1", port=dst)
        try:
            slot = int(a.cluster("KEYSLOT", key))
            src_id = a.cluster("MYID").decode()
            dst_id = b.cluster("MYID").decode()
            b.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)  # type: ignore[no-untyped-call]
            a.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)  # type: ignore[no-untyped-call]
            a.execute_command("MIGRATE", "127.0.0.1", dst, key, 0, 5000)  # type: ignore[no-untyped-call]
        finally:
            a.close()
            b.close()
        if finish:
            self.assign(slot, dst)

    def assign(self, slot: int, port: int) -> None:
        """Every primary assigns ``slot`` to the primary on ``port`` (ends a migration)."""
        import redis

        owner = redis.Redis(host="127.0.0.1", port=port)
        try:
            owner_id = owner.cluster("MYID").decode()
        finally:
            owner.close()
        for node in self.primary_nodes():
            c = redis.Redis(host="127.0.0.1", port=node.port)
            try:
                c.execute_command("CLUSTER", "SETSLOT", slot, "NODE", owner_id)  # type: ignore[no-untyped-call]
            finally:
                c.close()

    def _spawn(self, node: ClusterNode) -> None:
        args = [
            str(shutil.which(self._server)),
            "--port", str(node.port),
            "--bind", "127.0.0.1",
            "--cluster-enabled", "yes",
            "--cluster-port", str(node.bus_port),
            "--cluster-config-file", str(node.directory / "nodes.conf"),
            "--cluster-node-timeout", str(self.node_timeout_ms),
            "--cluster-replica-validity-factor", "0",
            "--repl-diskless-sync-delay", "0",  # replicas sync at once (default: wait 5 s for more)
            "--save", "",
            "--appendonly", "no",
            "--dir", str(node.directory),
            "--logfile", str(node.directory / "redis.log"),
        ]  # fmt: skip
        node.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True)

    def _create(self, timeout_s: float) -> None:
        args = [str(shutil.which(self._cli)), "--cluster", "create", *(n.address for n in self.nodes)]
        args += ["--cluster-replicas", str(self.replicas), "--cluster-yes"]
        try:
            done = subprocess.run(args, capture_output=True, text=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            raise LocalProcessError(f"redis-cli --cluster create did not finish within {timeout_s:.0f} s") from None
        if done.returncode != 0 or "[OK] All 16384 slots covered" not in done.stdout:
            tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
            raise LocalProcessError(f"redis-cli --cluster create failed: {' | '.join(tail)}")

    def _live_node(self) -> ClusterNode:
        for node in self.nodes:
            if node.alive:
                return node
        raise LocalProcessError("no node of the local cluster is running")

    def _query(self, node: ClusterNode, *command: str) -> str:
        import redis

        client = redis.Redis(host="127.0.0.1", port=node.port, socket_timeout=2, socket_connect_timeout=1)
        try:
            reply: Any = client.execute_command(*command)  # type: ignore[no-untyped-call]
        finally:
            client.close()
        if isinstance(reply, bytes):
            return reply.decode()
        if isinstance(reply, dict):  # INFO is parsed by redis-py
            return "\n".join(f"{k}:{v}" for k, v in reply.items())
        return str(reply)

    def _wait(self, ready: Callable[[], bool], timeout_s: float, what: str) -> None:
        import redis

        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if ready():
                    return
            except (redis.RedisError, OSError):
                pass  # a node between states; ask again
            if time.monotonic() > deadline:
                raise LocalProcessError(f"timed out after {timeout_s:g} s waiting for {what}")
            time.sleep(0.05)
