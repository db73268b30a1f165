"""W1: gomap.map("sampleadd") over 1M pairs, beside Pool(2).starmap(chunksize=5000) and a serial
loop, in the same run, on the embedded default's shape (a LocalCluster: one worker process on
every core).

    .venv/bin/python benchmarks/w1.py [--pairs 1000000] [--rounds 5] [--profile]

Target (issue 10): gomap.map at least 1.5x Pool(2).starmap(chunksize=5000). Each round runs the
three in turn and checks every result before its time counts; the table shows the median and
the best round, and gomap.map's speed-up over each (its median time over gomap.map's; below 1:
gomap.map is slower). To compare with the previous commit in the same run, run it alternately with
``PYTHONPATH=<old tree> GOMAP_WORKER_BINARY=<old worker>``. The worker's share per item:
``cd worker && go test -run '^$' -bench W1 -benchmem .``. ``--profile`` runs one more gomap.map under
cProfile and prints where the client's time goes.
"""

from __future__ import annotations

import argparse
import cProfile
import multiprocessing
import os
import pstats
import statistics
import time
from collections.abc import Callable
from typing import Any

import gomap


def add(a: int, b: int) -> int:
    return a + b


def timed(fn: Callable[[], list[Any]], want: list[int]) -> float:
    t0 = time.perf_counter()
    got = fn()
    elapsed = time.perf_counter() - t0
    if got != want:
        raise SystemExit(f"wrong results from {fn}")
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    pairs = [(i, (i * 7919) % 1_000_003) for i in range(args.pairs)]
    want = [a + b for a, b in pairs]
    cores = os.cpu_count() or 1
    times: dict[str, list[float]] = {"gomap.map": [], "Pool(2).starmap(chunksize=5000)": [], "serial": []}
    with (
        gomap.LocalCluster(quiet=True) as cluster,
        gomap.Client(cluster.url) as client,
        multiprocessing.get_context("fork").Pool(2) as pool,
    ):
        gomap.map("sampleadd", pairs[:10_000], client=client, progress=False)  # warm up
        pool.starmap(add, pairs[:10_000], chunksize=5000)
        for _ in range(args.rounds):
            times["gomap.map"].append(timed(lambda: gomap.map("sampleadd", pairs, client=client, progress=False), want))
            times["Pool(2).starmap(chunksize=5000)"].append(
                timed(lambda: pool.starmap(add, pairs, chunksize=5000), want)
            )
            times["serial"].append(timed(lambda: [add(a, b) for a, b in pairs], want))
        if args.profile:
            prof = cProfile.Profile()
            prof.enable()
            gomap.map("sampleadd", pairs, client=client, progress=False)
            prof.disable()
    base = statistics.median(times["gomap.map"])
    print(f"W1: {args.pairs:,} sampleadd pairs, {args.rounds} rounds, {cores} cores (median, best)")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"  {name:34s} {med:7.3f}s {min(ts):7.3f}s   gomap.map's speed-up over it: {med / base:5.2f}x")
    if args.profile:
        pstats.Stats(prof).sort_stats("tottime").print_stats(20)


if __name__ == "__main__":
    main()
