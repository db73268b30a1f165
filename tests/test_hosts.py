"""Worker hosts over real network links (tests/_hosts.py): network namespaces joined to Redis's by
veth pairs with a 1 ms round trip, a gomap-worker in each host, and the test's client on a link
of its own. A batch over two hosts is right and in order; a host cut off mid-batch (its link down)
or frozen mid-batch (SIGSTOP) loses nothing: once its liveness key expires, its chunks are
requeued to the other host, and when it comes back its late outcome changes nothing. Behind the
hosts, one Redis node or a 3-master Redis Cluster.

Needs root and iproute2 for links. Elsewhere, the tests that need only several worker processes run
with the hosts on loopback (Network(loopback=True)) and say so; those that need link control skip.
Under CI=true a missing capability fails instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator

import pytest
import redis

import gomap

from ._hosts import HostsError, Network
from .conftest import wait_until

pytestmark = [pytest.mark.faults, pytest.mark.timeout(60)]

# As tests/conftest.py Worker: a host is declared dead 1 s after its last heartbeat.
FAST = ["-heartbeat", "200ms", "-dead-after", "1s", "-shutdown-timeout", "2s"]
QUEUE = "goworker:queue:samplesleep"


def hosts(n: int = 2, *, masters: int = 1, links: bool = False, rtt_ms: float = 1.0) -> Network:
    """A Network of n hosts at rtt_ms (1 ms): over links where namespaces can be made; else, when the
    test needs no link control, on loopback, saying so; else the test skips (fails under CI=true)."""
    why = Network.available()
    if not why:
        return Network(hosts=n, rtt_ms=rtt_ms, masters=masters)
    if os.environ.get("CI") == "true":
        pytest.fail(f"worker hosts cannot be built here: {why}")
    if links:
        pytest.skip(f"worker hosts cannot be built here ({why}): this test needs their links")
    say = f"worker hosts on loopback, not on 1 ms links: {why}"
    print(say)
    warnings.warn(say, stacklevel=2)
    return Network(hosts=n, masters=masters, loopback=True)


@pytest.fixture
def net() -> Iterator[Network]:
    with hosts(2) as n:
        yield n


@pytest.fixture
def linked() -> Iterator[Network]:
    with hosts(2, links=True) as n:
        yield n


@pytest.fixture
def client(net: Network) -> Iterator[gomap.Client]:
    c = gomap.Client(net.redis_url)
    yield c
    c.close()


def db(net: Network) -> redis.Redis:
    return redis.Redis(unix_socket_path=net.sock)


def nodes(net: Network) -> list[redis.Redis]:
    """A client of each Redis node (one, or each master of a cluster), on its unix socket."""
    return [redis.Redis(unix_socket_path=s) for s in net.socks]


def batch_keys(r: redis.Redis) -> list[bytes]:
    return r.keys("goworker:gomap:{*")


def inflight(r: redis.Redis, proc: str) -> int:
    return int(r.llen(f"goworker:gomap:inflight:{{{QUEUE}}}:{proc}"))


def registered(r: redis.Redis, proc: str) -> bool:
    return bool(r.hexists("goworker:gomap:workers", proc)) and bool(r.exists(f"goworker:gomap:alive:{proc}"))


def busy(r: redis.Redis, proc: str) -> list[bytes]:
    """The Resque ``worker:<slot>`` keys of proc's slots that say they run a job."""
    return [k for k in r.keys(f"goworker:worker:{proc}-*") if not k.endswith(b":started")]


def processed_by(rs: redis.Redis | list[redis.Redis], host: str) -> int:
    """Jobs the Resque worker ids (slots) of host have processed (on every node given)."""
    return sum(
        int(r.get(k) or 0)
        for r in (rs if isinstance(rs, list) else [rs])
        for k in r.keys(f"goworker:stat:processed:{host}:*")
    )


def namespaces() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True, timeout=10).stdout


def test_the_links_delay_and_cut() -> None:
    """The harness itself: a round trip of at least the link's delay, only over the host's own link;
    a link down cuts the host off and up joins it again; everything is gone after the with."""
    with hosts(2, links=True) as net:
        assert net.rtt(0) >= 1.0
        net.set_delay(1, 20)
        assert net.rtt(1, pings=5) >= 20.0
        assert net.rtt(0) < 20.0
        # A host has no route but its link: Redis's address on the other link is out of reach.
        reach = f"import socket; socket.create_connection(('{net.redis_addr(1)}', 6379), 2)"
        assert net.exec(0, [sys.executable, "-c", reach]).returncode != 0
        net.link_down(0)
        with pytest.raises(HostsError, match=r"unreachable|No route|timed out"):
            net.rtt(0, pings=1)
        net.link_up(0)
        wait_until(lambda: _reachable(net, 0), timeout=10, what="host 0 reaches Redis again")
        w = net.start_worker(0, *FAST)
        names = [net.redis_ns, *net.host_ns]
        assert all(n in namespaces() for n in names)
    assert not any(n in namespaces() for n in names)
    assert w.popen is not None and w.popen.poll() is not None  # stopped by its PID


def _reachable(net: Network, i: int) -> bool:
    try:
        net.rtt(i, pings=1)
    except Exception:
        return False
    return True


def test_a_batch_over_two_hosts_is_right_and_in_order(net: Network, client: gomap.Client) -> None:
    for i in range(2):
        net.start_worker(i, *FAST)
    r = db(net)
    pairs = [(i, (i * 7919) % 1_000_003) for i in range(100_000)]
    got = gomap.map("sampleadd", pairs, client=client, progress=False, timeout=50)
    assert got == [a + b for a, b in pairs]
    # Both hosts took chunks, each over its own link.
    assert processed_by(r, "host0") > 0
    assert processed_by(r, "host1") > 0
    if not net.loopback:
        assert net.connections(0) > 0
        assert net.connections(1) > 0
    assert not batch_keys(r)


def test_a_batch_over_two_hosts_and_a_3_master_cluster() -> None:
    """Two hosts at 1 ms before a 3-master Redis Cluster: workers and the client reach the nodes by
    the addresses the nodes announce, each host over its own link; 100k pairs right and in order,
    both hosts did work, and the batch's keys (on several nodes) are gone."""
    with hosts(2, masters=3) as net:
        rs = nodes(net)
        assert [r.info("cluster")["cluster_enabled"] for r in rs] == [1, 1, 1]
        assert all(r.cluster("info")["cluster_state"] == "ok" for r in rs)
        for i in range(2):
            net.start_worker(i, *FAST)
        with gomap.Client(net.redis_url) as client:
            assert client.cluster
            pairs = [(i, (i * 7919) % 1_000_003) for i in range(100_000)]
            got = gomap.map("sampleadd", pairs, client=client, progress=False, timeout=50)
        assert got == [a + b for a, b in pairs]
        assert processed_by(rs, "host0") > 0
        assert processed_by(rs, "host1") > 0
        # The keys are spread over the masters: each holds some of the pool's.
        assert all(r.dbsize() > 0 for r in rs)
        if not net.loopback:
            # Each host reaches the nodes over its link only: not through another host's.
            assert net.connections(0) > 0
            assert net.connections(1) > 0
            for i in range(2):
                assert net.rtt(i, pings=20, node=2) >= 1.0
        assert not any(r.keys("goworker:gomap:{*") for r in rs)


def test_hosts_on_loopback() -> None:
    """The fallback where namespaces cannot be made: the hosts are worker processes on loopback
    (run here even where namespaces can be made): a batch over both is right, both did work, no
    namespace was made, and link control says it needs links."""
    with Network(hosts=2, loopback=True) as net:
        assert net.delay_method == "loopback"
        for i in range(2):
            net.start_worker(i, *FAST)
        with gomap.Client(net.redis_url) as client:
            pairs = [(i, 3 * i) for i in range(20_000)]
            got = gomap.map("sampleadd", pairs, chunksize=100, client=client, progress=False, timeout=30)
        assert got == [4 * i for i in range(20_000)]
        r = db(net)
        assert processed_by(r, "host0") > 0
        assert processed_by(r, "host1") > 0
        for control in (net.link_down, net.link_up, net.connections, net.rtt):
            with pytest.raises(HostsError, match=r"needs the hosts' network links.*loopback"):
                control(0)
        with pytest.raises(HostsError, match="loopback"):
            net.set_delay(0, 5)
        if shutil.which("ip"):
            assert net.tag not in namespaces()
        w = net.workers[0][0]
    assert w.popen is not None and w.popen.poll() is not None  # stopped by its PID


def _fault_batch(net: Network, client: gomap.Client, cut: str) -> None:
    """A samplesleep batch over two hosts; host 1 is cut off (``link``) or frozen (``stop``) while it
    runs a chunk, and comes back once the batch is done."""
    host0 = net.start_worker(0, *FAST)
    host1 = net.start_worker(1, *FAST)
    r = db(net)
    items = [0.3 + i / 1000 for i in range(40)]
    batch = gomap.submit("samplesleep", items, chunksize=2, client=client)
    wait_until(lambda: inflight(r, host1.id) > 0, timeout=10, what="host 1 runs a chunk")
    if cut == "link":
        net.link_down(1)
    else:
        net.stop(1)
    try:
        assert batch.result(timeout=40) == items
        # Host 1 was declared dead (its liveness key expired) and its chunks were requeued.
        assert not registered(r, host1.id)
        assert int(r.get("goworker:gomap:stat:requeued") or 0) >= 1
        assert registered(r, host0.id)
    finally:
        if cut == "link":
            net.link_up(1)
        else:
            net.cont(1)
    # It comes back: its heartbeat restores its record, it drops its stale chunk, and nothing of the
    # batch comes back with it.
    wait_until(lambda: registered(r, host1.id), timeout=20, what="host 1's worker registers again")
    wait_until(lambda: inflight(r, host1.id) == 0, timeout=20, what="host 1 lets go of its stale chunk")
    wait_until(lambda: not busy(r, host1.id), timeout=20, what="host 1 is idle")
    assert not batch_keys(r)
    assert host1.running
    # And the pool, host 1 included, runs the next batch right.
    again = [0.01 + i / 1000 for i in range(40)]
    assert gomap.map("samplesleep", again, chunksize=1, client=client, progress=False, timeout=30) == again
    assert not batch_keys(r)


def test_a_host_cut_off_mid_batch_loses_nothing(linked: Network) -> None:
    with gomap.Client(linked.redis_url) as client:
        _fault_batch(linked, client, "link")


def test_a_host_stopped_mid_batch_loses_nothing(net: Network, client: gomap.Client) -> None:
    _fault_batch(net, client, "stop")


def test_a_worker_over_a_slow_link_reserves_ahead() -> None:
    """Over a link of a few milliseconds a worker reserves a job beyond its busy slot (Config.Prefetch,
    automatic), so that the slot finds its next job in memory; the pool still runs every job once."""
    with hosts(1, links=True, rtt_ms=3.0) as net:
        w = net.start_worker(0, *FAST, concurrency=1)
        r = db(net)
        with gomap.Client(net.redis_url) as client:
            for _ in range(4):
                client.enqueue("samplesleep", 0.5)
            wait_until(lambda: inflight(r, w.id) >= 2, timeout=10, what="a job reserved beyond the busy slot")
            assert r.llen(QUEUE) <= 2
            wait_until(lambda: r.llen(QUEUE) == 0 and inflight(r, w.id) == 0, timeout=15, what="every job ran")
            assert int(r.get("goworker:stat:processed") or 0) == 4


def test_a_slow_host_does_not_hold_the_batch_hostage() -> None:
    """One host at 50 ms, one at 1 ms: the batch is right, done within seconds (the slow host's
    chunks are pushed again to the fast one when the batch waits on them: backup chunks), and
    leaves nothing behind."""
    with hosts(2, links=True) as net:
        net.set_delay(1, 50)
        for i in range(2):
            net.start_worker(i, *FAST)
        r = db(net)
        with gomap.Client(net.redis_url) as client:
            items = [0.05 + i / 10_000 for i in range(40)]
            t0 = time.monotonic()
            assert gomap.map("samplesleep", items, chunksize=1, client=client, progress=False, timeout=30) == items
            assert time.monotonic() - t0 < 10
        assert processed_by(r, "host0") > 0
        wait_until(lambda: not batch_keys(r), timeout=10, what="no batch keys are left")
