"""One hot function on a 3-master Redis Cluster, Redis bound: its queue as one list on one master
(workers' ``-shards 1``) against its queue sharded over the three masters (``-shards 3``,
docs/protocol.md "Sharded queues").

    .venv/bin/python benchmarks/shards.py [--jobs 100000] [--repeat 3] [--json shards.json]

To make Redis, not the client, the bottleneck, the jobs are plain ``sampleadd`` jobs pushed before
the clock starts (spread over the shards when the workers serve three; ``enqueue(spread=True)``
puts them the same way), and the clock runs while one ``gomap-worker`` (``-concurrency 25``)
drains them: every job costs Redis a reserve, a ``worker:<id>`` record, an acknowledgement and two
counters, and the function itself nothing. Each figure is the best of --repeat drains. All on one
machine: the three masters and the worker share its cores, so the figure says how much of the
masters' extra threads this machine lets a single function use, not what separate machines would.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis

from gomap import _binary, _codec, _procs, _protocol

NS = "goworker:"
QUEUE = "sampleadd"
PUSH_BATCH = 5_000


def cluster(n: int) -> list[_procs.RedisServer]:
    cli = shutil.which("redis-cli")
    if cli is None:
        raise SystemExit("redis-cli is not on PATH (apt-get install redis-server)")
    servers = [_procs.RedisServer(cluster=True, args=["--io-threads", "1"]) for _ in range(n)]
    subprocess.run([cli, "--cluster", "create", *[s.address for s in servers], "--cluster-replicas", "0",
                    "--cluster-yes"], check=True, capture_output=True, timeout=60)  # fmt: skip
    deadline = time.monotonic() + 30
    while not all(s.client().cluster("info")["cluster_state"] == "ok" for s in servers):
        if time.monotonic() > deadline:
            raise SystemExit("the cluster did not come up within 30 s")
        time.sleep(0.05)  # polling the cluster's state
    return servers


def cpu(pid: int) -> float:
    """CPU seconds (user + system) process pid has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def processed(rc: redis.RedisCluster) -> int:
    return int(rc.get(NS + "stat:processed") or 0)


def drain(url: str, rc: redis.RedisCluster, jobs: int, shards: int, masters: list[int]) -> tuple[float, list[float]]:
    """Push jobs plain sampleadd jobs round the queue's shards, then time a worker draining them:
    the seconds, and the share of a core each master and the worker used meanwhile."""
    keys = _protocol.Keys(NS)
    names = _protocol.shard_names(keys, QUEUE, shards)
    rc.sadd(keys.queues(), *names)
    for lo in range(0, jobs, PUSH_BATCH):
        pipe = rc.pipeline(transaction=False)
        for i in range(lo, min(lo + PUSH_BATCH, jobs)):
            pipe.rpush(keys.queue(names[i % len(names)]), _codec.dumps_resque(QUEUE, [i, 1]))
        pipe.execute()
    before = processed(rc)
    w = _procs.WorkerProcess(_binary.worker_binary(), ["-uri", url, "-hostname", "bench", "-queues", QUEUE,
                             "-shards", str(shards), "-concurrency", "25", "-connections", "8",
                             "-log-level", "warn"], name="gomap-worker")  # fmt: skip
    try:
        pids = [*masters, w.pid]
        c0, t0 = [cpu(p) for p in pids], time.perf_counter()
        while processed(rc) < before + jobs:
            if time.perf_counter() - t0 > 300:
                raise SystemExit("the worker did not drain the jobs within 300 s")
            time.sleep(0.002)  # polling the processed counter: the clock's resolution
        t = time.perf_counter() - t0
        return t, [(cpu(p) - c) / t for p, c in zip(pids, c0, strict=True)]
    finally:
        w.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", default="shards.json")
    args = ap.parse_args()
    _binary.worker_binary()  # built before anything is timed
    servers = cluster(3)
    try:
        url = servers[0].url
        rc = redis.RedisCluster.from_url(url)
        rows = []
        masters = [s.process.pid for s in servers]
        for rnd in range(args.repeat):
            for shards in (1, 3):  # alternating, so that the machine's drift hits both alike
                t, load = drain(url, rc, args.jobs, shards, masters)
                rows.append({"round": rnd, "shards": shards, "seconds": t, "jobs_per_s": args.jobs / t,
                             "cpu_masters": load[:-1], "cpu_worker": load[-1]})  # fmt: skip
                busy = ", ".join(f"{x:.0%}" for x in load[:-1])
                print(f"  round {rnd}: -shards {shards}: {args.jobs / t:,.0f} jobs/s; CPU of a core: masters {busy}, "
                      f"worker {load[-1]:.0%}", flush=True)  # fmt: skip
    finally:
        for s in servers:
            s.stop()
    best = {n: max(r["jobs_per_s"] for r in rows if r["shards"] == n) for n in (1, 3)}
    print()
    print(f"one function's plain jobs drained by one worker, 3-master cluster on {os.cpu_count()} cores; "
          f"{args.jobs} jobs, best of {args.repeat}")  # fmt: skip
    for n in (1, 3):
        print(f"  -shards {n}: {best[n]:>10,.0f} jobs/s")
    print(f"  ratio: {best[3] / best[1]:.2f}")
    Path(args.json).write_text(json.dumps({"jobs": args.jobs, "rows": rows, "best": best}, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
