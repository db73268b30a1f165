"""The embedded default: how fast it starts warm, and whether one worker process with goroutines
or one process per core serves a 2-core machine better.

    .venv/bin/python benchmarks/local_cluster.py

The worker binary is built (and cached) before timing, so "warm start" is what every Python
process after the first pays: starting redis-server and the worker, and the first result.
"""

from __future__ import annotations

import os
import statistics
import time

from _common import redis_server, workers

import gomap
from gomap import _binary


def warm_start(runs: int) -> None:
    _binary.worker_binary()  # build once, outside the timing
    starts, firsts = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        cluster = gomap.LocalCluster(quiet=True).start()
        t1 = time.perf_counter()
        with gomap.Client(cluster.url) as client:
            assert gomap.map("sampleadd", [(1, 2)], client=client, progress=False) == [3]
        t2 = time.perf_counter()
        cluster.close()
        starts.append(t1 - t0)
        firsts.append(t2 - t0)
    print(
        f"warm start of the embedded default ({runs} runs): median {statistics.median(starts):.3f}s to ready, "
        f"{statistics.median(firsts):.3f}s to the first result (max {max(firsts):.3f}s)"
    )


def throughput(url: str, label: str) -> None:
    with gomap.Client(url) as client:
        pairs = [(i, i) for i in range(1_000_000)]
        gomap.map("sampleadd", pairs[:10_000], client=client, progress=False)  # warm up
        t0 = time.perf_counter()
        gomap.map("sampleadd", pairs, client=client, progress=False)
        t_add = time.perf_counter() - t0
        primes = [200_000 + i for i in range(32)]
        t0 = time.perf_counter()
        gomap.map("countprimes", primes, client=client, progress=False)
        t_primes = time.perf_counter() - t0
    print(f"  {label}: sampleadd {1_000_000 / t_add:,.0f} items/s, countprimes(200000+i) x32 {t_primes:.2f}s")


def main() -> None:
    warm_start(5)
    cores = os.cpu_count() or 1
    print(f"processes or goroutines, on {cores} cores:")
    with redis_server() as url:
        with workers(url, 1, concurrency=max(2, cores), gomaxprocs=cores):
            throughput(url, f"1 process x {cores} cores (what LocalCluster runs)")
        with workers(url, cores, concurrency=1, gomaxprocs=1):
            throughput(url, f"{cores} processes x 1 core")


if __name__ == "__main__":
    main()
