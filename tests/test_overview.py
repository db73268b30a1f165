"""What a Client and a LocalCluster show of themselves: repr, _repr_html_ and overview()."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest

import gomap
from gomap import _overview

from .conftest import RedisServer, wait_until, worker_binary

pretty = pytest.importorskip("IPython.lib.pretty").pretty  # how IPython displays a value: with the pool

SECRET = "s3cr3t-overview"


def test_overview_of_a_local_cluster_and_its_pool():
    """A cluster on 1 core (2 slots) busy with a batch: the overview shows its processes, the
    pool's slots and cores, the functions, the jobs waiting on each queue and the batch."""
    worker_binary()
    with gomap.LocalCluster(cores=1, quiet=True) as cluster, gomap.Client(cluster.url) as client:
        for i in range(3):
            client.enqueue("sampleupper", f"parked {i}", queue="parked")  # a queue no worker takes
        batch = gomap.submit("samplesleep", [30.0] * 3, chunksize=1, client=client)
        try:
            o = client.overview()
            assert o.error == "" and o.queues_error == "" and o.batches_error == ""
            assert (o.processes, o.slots, o.cores) == (1, 2, 1)
            assert {"sampleadd", "samplesleep", "countprimes"} <= set(o.functions)
            queues = {q.name: q.length for q in o.queues}
            assert queues["parked"] == 3  # (samplesleep's chunks may all run: it is Concurrent)
            assert [(b.id, b.function, b.items, b.client) for b in o.batches] == [
                (batch.id, "samplesleep", 3, "python")
            ]
            assert o.batches[0].submitted == 3 and abs(o.batches[0].created - time.time()) < 60
            assert not o.embedded and o.local is None  # a client given a URL

            text = pretty(client)
            assert text.startswith("<gomap.Client") and "embedded default: no" in text
            assert "1: 2 slots (chunks at once), 1 core" in text
            assert "parked: 3" in text and f"{batch.id}: samplesleep, 3 items" in text

            assert "parked" not in repr(client) and "not read by repr()" in repr(client)  # repr asks no Redis
            shown = pretty(cluster)  # the cluster's own: its processes and files, and the same pool
            assert shown.startswith("<gomap.LocalCluster")
            for detail in (f"pid {cluster.pid}", f"pid {cluster.redis_pid}", cluster.binary, cluster.log_dir):
                assert detail and detail in shown
            assert "parked: 3" in shown and batch.id in shown

            page = cluster._repr_html_()
            assert page.startswith("<div><strong>gomap.LocalCluster</strong><table>")
            assert '<td style="text-align:left">parked</td><td style="text-align:left">3</td>' in page
            assert f'<td style="text-align:left">{batch.id}</td>' in page
        finally:
            batch.cancel()
    assert "the local cluster is stopped" in pretty(cluster)  # no Redis to ask: it says so


def test_batches_are_bounded_newest_first_and_the_rest_counted(fresh_redis):
    r = fresh_redis.redis
    now = int(time.time())
    for i in range(25):
        r.hset(f"goworker:gomap:{{b{i:02d}}}:meta", mapping={"function": "f", "items": i, "created": now - 100 + i})
    r.hset("other:gomap:{elsewhere}:meta", mapping={"function": "g", "items": 1})  # another namespace
    r.sadd("goworker:queues", "<b>odd</b>")
    r.rpush("goworker:queue:<b>odd</b>", "x")
    with gomap.Client(fresh_redis.url) as client:
        o = client.overview()
        assert [b.id for b in o.batches] == [f"b{i:02d}" for i in range(24, 4, -1)]
        assert (o.batches_more, o.batches_complete) == (5, True)
        assert (o.processes, o.functions, o.cores) == (0, (), 0)
        assert "5 more not listed" in pretty(client) and "none live" in pretty(client)
        page = client._repr_html_()
    assert "&lt;b&gt;odd&lt;/b&gt;" in page and "<b>odd" not in page  # names are escaped


def test_batches_on_every_node_of_a_redis_cluster():
    """On a Redis Cluster the batches' keys are spread over the masters: the SCAN reads each."""
    cli = shutil.which("redis-cli")
    if cli is None:
        pytest.skip("redis-cli is not on PATH (apt-get install redis-server)")
    servers: list[RedisServer] = []
    try:
        servers += [RedisServer(cluster=True) for _ in range(3)]
        subprocess.run([cli, "--cluster", "create", *(s.address for s in servers), "--cluster-replicas", "0",
                        "--cluster-yes"], check=True, capture_output=True, timeout=60)  # fmt: skip
        wait_until(lambda: all(s.redis.cluster("info")["cluster_state"] == "ok" for s in servers), timeout=30,
                   what="the cluster is ok")  # fmt: skip
        with gomap.Client(servers[0].url) as client:
            assert client.cluster
            for i in range(12):
                client.redis.hset(f"goworker:gomap:{{c{i:02d}}}:meta", mapping={"function": "f", "created": i + 1})
            held = [s.redis.dbsize() for s in servers]
            assert sum(1 for n in held if n) > 1, held  # on more than one node
            o = client.overview()
        assert sorted(b.id for b in o.batches) == [f"c{i:02d}" for i in range(12)] and o.batches_error == ""
    finally:
        for s in servers:
            s.stop()


def test_unreachable_redis_is_said_not_raised():
    server = RedisServer(tcp=True, password=SECRET)
    try:
        client = gomap.Client(server.url)
        assert "xxxxx" in repr(client) and SECRET not in repr(client)
        server.kill()
        for show in (pretty, lambda c: c._repr_html_()):
            t0 = time.monotonic()
            said = show(client)
            assert time.monotonic() - t0 < 4.0  # a 1 s deadline, plus one connect attempt at most
            assert "cannot reach Redis at redis://:xxxxx@127.0.0.1" in said, said
            assert SECRET not in said
        o = client.overview(timeout=0.3)
        assert o.error.startswith("cannot reach Redis") and o.workers == () and o.batches == ()
        client.close()
        assert "the client is closed" in pretty(client)
    finally:
        server.stop()


def test_a_refused_scan_is_said_in_its_part(fresh_redis):
    """A least-privilege client user (docs/security.md) may not SCAN: the batches say so, the rest shows."""
    r = fresh_redis.redis
    r.execute_command("ACL", "SETUSER", "noscan", "on", ">pw", "~*", "&*", "+@all", "-scan")
    r.sadd("goworker:queues", "q")
    r.rpush("goworker:queue:q", "a", "b")
    with gomap.Client(f"unix://noscan:pw@{fresh_redis.sock}") as client:
        o = client.overview()
    assert o.error == "" and [(q.name, q.length) for q in o.queues] == [("q", 2)]
    assert "NOPERM" in o.batches_error or "permission" in o.batches_error, o.batches_error
    assert o.batches_error in o.text("x") and "q: 2" in o.text("x")


def test_the_counts_of_older_workers_say_unknown_cores():
    o = _overview.Overview(
        url="redis://:pw@host:6379/",
        namespace="goworker:",
        embedded=False,
        workers=(
            gomap.WorkerInfo("a", "h1", 1, (), ("f",), 4, cores=2),
            gomap.WorkerInfo("b", "h2", 2, (), ("f",), 8),  # an older worker: no cores in its record
        ),
        functions=("f",),
    )
    assert o.url == "redis://:xxxxx@host:6379/"
    assert (o.processes, o.slots, o.cores, o.hosts) == (2, 12, None, 2)
    assert "2 on 2 hosts: 12 slots (chunks at once), ? cores" in o.text("x")


@pytest.mark.parametrize("cores", [0, -1, 1.5, True])
def test_bad_cores_are_config_errors(cores):
    with pytest.raises(gomap.ConfigError, match="cores must be a positive int"):
        gomap.LocalCluster(cores=cores)
