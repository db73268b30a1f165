"""A Redis Cluster on loopback for tests: M masters with R replicas each, every node a real
redis-server (conftest.RedisServer) stopped by its PID at the end; and what a failover test
needs: which node is master of a key's slot, a master killed (SIGKILL), its replica's promotion
waited for.

    with Cluster(masters=3, replicas=1, node_timeout_ms=1000) as c:
        node = c.master_of("goworker:queue:sampleadd")
        c.kill(node)
        new = c.wait_promoted(c.keyslot("goworker:queue:sampleadd"), node)
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from typing import Any

import pytest
import redis

from .conftest import RedisServer, wait_until


@dataclass(frozen=True)
class Node:
    """One line of CLUSTER NODES, as one node sees the cluster."""

    id: str
    port: int
    flags: frozenset[str]
    master_id: str  # "-" for a master
    link: str  # "connected" / "disconnected"
    slots: tuple[tuple[int, int], ...]  # (first, last) ranges, for a master

    @property
    def master(self) -> bool:
        return "master" in self.flags

    @property
    def failed(self) -> bool:
        return "fail" in self.flags or "fail?" in self.flags

    def serves(self, slot: int) -> bool:
        return any(lo <= slot <= hi for lo, hi in self.slots)


def parse_nodes(text: str) -> list[Node]:
    """CLUSTER NODES' reply, parsed (slot ranges being migrated, "[…]", left out)."""
    nodes = []
    for line in text.strip().splitlines():
        f = line.split()
        addr = f[1].split("@")[0]
        slots = []
        for s in f[8:]:
            if s.startswith("["):
                continue
            lo, _, hi = s.partition("-")
            slots.append((int(lo), int(hi or lo)))
        port = int(addr.rsplit(":", 1)[1]) if ":" in addr and addr.rsplit(":", 1)[1] else 0
        nodes.append(Node(f[0], port, frozenset(f[2].split(",")), f[3], f[7], tuple(slots)))
    return nodes


class Cluster:
    """M masters with R replicas each on 127.0.0.1, created with ``redis-cli --cluster create``,
    ready when constructed: cluster_state ok on every node, every node knows every other with
    its role, and every replica in sync with its master. ``url`` is the first master's."""

    def __init__(
        self, masters: int = 3, replicas: int = 0, *, node_timeout_ms: int = 2000, timeout: float = 30.0
    ) -> None:
        cli = shutil.which("redis-cli")
        if cli is None:
            pytest.skip("redis-cli is not on PATH (apt-get install redis-server)")
        self.masters, self.replicas = masters, replicas
        self.servers: list[RedisServer] = []
        self.killed: list[RedisServer] = []
        self.paused: list[RedisServer] = []  # frozen (SIGSTOP): not asked anything until resumed
        self.ids: dict[int, str] = {}  # port → node id
        args = ["--cluster-node-timeout", str(node_timeout_ms), "--repl-diskless-sync-delay", "0"]
        try:
            for _ in range(masters * (1 + replicas)):
                self.servers.append(RedisServer(cluster=True, args=args))
                self.servers[-1].redis.set_response_callback("CLUSTER NODES", lambda r, **_: r)  # the raw text
            addrs = [s.address for s in self.servers]
            subprocess.run([cli, "--cluster", "create", *addrs, "--cluster-replicas", str(replicas), "--cluster-yes"],
                           check=True, capture_output=True, timeout=timeout)  # fmt: skip
            self.ids = {s.port: s.redis.execute_command("CLUSTER MYID").decode() for s in self.servers}
            wait_until(self._ready, timeout=timeout, what=f"the cluster of {len(self.servers)} nodes is ok and in sync")
        except BaseException:
            self.stop()
            raise
        self.url = self.servers[0].url

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def alive(self) -> list[RedisServer]:
        """The servers neither killed nor paused."""
        return [s for s in self.servers if s not in self.killed and s not in self.paused]

    def stop(self) -> None:
        """Stop every server (each by its PID) and remove its directory."""
        for s in self.paused:
            s.resume()  # so that SIGTERM ends it
        for s in self.servers:
            s.stop()

    def pause(self, server: RedisServer) -> None:
        """Freeze ``server`` (SIGSTOP): a replica paused misses what its master writes meanwhile."""
        self.paused.append(server)
        server.pause()

    def resume(self, server: RedisServer) -> None:
        server.resume()
        self.paused.remove(server)

    def by_id(self, node_id: str) -> RedisServer:
        return next(s for s in self.servers if self.ids.get(s.port) == node_id)

    def nodes(self, server: RedisServer | None = None) -> list[Node]:
        """The cluster as ``server`` (default: the first live node) sees it."""
        server = server or self.alive[0]
        return parse_nodes(server.redis.execute_command("CLUSTER NODES").decode())  # raw: see __init__

    def keyslot(self, key: str) -> int:
        return int(self.alive[0].redis.execute_command("CLUSTER KEYSLOT", key))

    def master_of(self, key: str) -> RedisServer:
        """The server that is master of the slot of ``key``, as the first live node sees it."""
        slot = self.keyslot(key)
        for n in self.nodes():
            if n.master and not n.failed and n.serves(slot):
                return self.by_id(n.id)
        raise AssertionError(f"no live master serves slot {slot} ({key})")

    def replica_servers(self) -> list[RedisServer]:
        """The servers that are replicas now."""
        return [self.by_id(n.id) for n in self.nodes() if "slave" in n.flags and not n.failed]

    def replicas_of(self, master: RedisServer) -> list[RedisServer]:
        mid = self.ids[master.port]
        return [self.by_id(n.id) for n in self.nodes() if n.master_id == mid]

    @staticmethod
    def read(server: RedisServer, *command: object) -> Any:
        """Run a read command on ``server``, a replica too (READONLY on the same connection)."""
        pipe = server.redis.pipeline(transaction=False)
        pipe.execute_command("READONLY")
        pipe.execute_command(*command)
        return pipe.execute()[1]

    def kill(self, server: RedisServer) -> float:
        """SIGKILL the server (a crash: nothing is flushed, no goodbye to the cluster); returns
        the time.monotonic() of the kill."""
        self.killed.append(server)
        server.kill()
        return time.monotonic()

    def wait_promoted(self, slot: int, old: RedisServer, timeout: float = 20.0) -> RedisServer:
        """Wait until every live node sees a master other than ``old`` serving ``slot``, and
        cluster_state ok; return that master."""
        old_id = self.ids[old.port]
        found: list[RedisServer] = []

        def promoted() -> bool:
            owners = set()
            for s in self.alive:
                try:
                    if s.redis.cluster("info")["cluster_state"] != "ok":
                        return False
                    nodes = self.nodes(s)
                except redis.exceptions.RedisError:
                    return False
                owners |= {n.id for n in nodes if n.master and not n.failed and n.serves(slot)}
            if len(owners) != 1 or old_id in owners:
                return False
            found[:] = [self.by_id(owners.pop())]
            return True

        wait_until(promoted, timeout=timeout, what=f"a replica of {old.address} is master of slot {slot}")
        return found[0]

    def _ready(self) -> bool:
        total = len(self.servers)
        for s in self.servers:
            if s.redis.cluster("info")["cluster_state"] != "ok":
                return False
            nodes = self.nodes(s)
            if len(nodes) != total or any(n.failed or n.link != "connected" for n in nodes):
                return False
            if sum(n.master for n in nodes) != self.masters:
                return False
        for s in self.servers:
            info = s.redis.info("replication")
            if info["role"] == "master":
                if info.get("connected_slaves", 0) != self.replicas:
                    return False
            elif info.get("master_link_status") != "up" or info.get("master_sync_in_progress", 1):
                return False
        return True
