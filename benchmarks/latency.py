"""One-item call latency with warm, idle workers, and the CPU an idle worker uses.

    .venv/bin/python benchmarks/latency.py [--calls 2000]

Targets: p50 <= 0.2 ms, p99 <= 0.5 ms (issue 10; docs/design.md's first ones were 1 ms and 5 ms);
idle worker ~0% CPU. The worker listens on all eight sample queues (the default), so a call also
shows that an idle worker blocked on many queues at once takes a new job without polling.

A call is two round trips of the client (submit, wait and collect pipelined; then the finishing
DEL), plus the worker's own between the job landing on the queue and its result. To compare
with the previous commit in the same run, run it alternately with
``PYTHONPATH=<old tree> GOMAP_WORKER_BINARY=<old worker>``.
"""

from __future__ import annotations

import argparse
import os
import time

from _common import cpu_seconds, percentile, redis_server, workers

import gomap


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--idle-seconds", type=float, default=5.0)
    args = ap.parse_args()
    with redis_server() as url, workers(url, 1, concurrency=25, gomaxprocs=os.cpu_count() or 1) as (pid,):
        client = gomap.Client(url)
        add = gomap.function("sampleadd", client=client)
        for _ in range(100):
            add(1, 2)
        lat = []
        for i in range(args.calls):
            t0 = time.perf_counter()
            assert add(i, 1) == i + 1
            lat.append((time.perf_counter() - t0) * 1000)
        print(
            f"one-item call, {args.calls} calls: p50 {percentile(lat, 50):.3f} ms, p90 {percentile(lat, 90):.3f} ms, "
            f"p99 {percentile(lat, 99):.3f} ms, max {max(lat):.3f} ms"
        )
        c0, t0 = cpu_seconds(pid), time.monotonic()
        time.sleep(args.idle_seconds)
        c1, t1 = cpu_seconds(pid), time.monotonic()
        print(f"idle worker CPU over {t1 - t0:.1f}s: {100 * (c1 - c0) / (t1 - t0):.2f}% of one core")
        client.close()


if __name__ == "__main__":
    main()
