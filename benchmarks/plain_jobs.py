"""Plain Resque jobs: how fast a worker drains 100k pre-loaded Ruby-format jobs, this tree against a baseline.

    .venv/bin/python benchmarks/plain_jobs.py [--jobs 100000] [--runs 3] [--baseline /tmp/prev-gomap-worker]

Each run starts a private redis-server (unix socket), pre-loads the jobs byte for byte as Ruby's
``Resque.enqueue`` writes them (``{"class":"sampleadd","args":[i,i]}``) under a staging key, starts a
worker on the queue and waits for its ready line, then RENAMEs the staging list onto the queue (one
atomic step, which wakes the idle worker) and times until the jobs are drained: the queue empty,
``stat:processed`` at the number of jobs and the worker's in-flight list empty. The two binaries run
alternately with the same flags: gomap-worker's default (-concurrency 25) and the embedded default's
(-concurrency max(2, cores), -connections max(4, 2 x cores), GOMAXPROCS=cores). Every process is
stopped by PID.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Sequence

import redis

from gomap import _binary, _codec, _procs

NS = "resque:"
QUEUE = "sampleadd"


def configs() -> dict[str, list[str]]:
    cores = os.cpu_count() or 1
    return {
        "concurrency 25 (gomap-worker default)": ["-concurrency", "25"],
        "embedded default": ["-concurrency", str(max(2, cores)), "-connections", str(max(4, 2 * cores))],
    }


def preload(r: redis.Redis, n: int, staging: str) -> None:
    """RPUSH n Ruby-format sampleadd jobs onto staging, in pipelined groups."""
    group = 5000
    for lo in range(0, n, group):
        payloads = [_codec.dumps_resque("sampleadd", [i, i]) for i in range(lo, min(n, lo + group))]
        r.rpush(staging, *payloads)


def drained(r: redis.Redis, n: int, inflight: str) -> bool:
    pipe = r.pipeline(transaction=False)
    pipe.llen(NS + "queue:" + QUEUE)
    pipe.get(NS + "stat:processed")
    pipe.llen(inflight)
    queued, processed, held = pipe.execute()
    return queued == 0 and int(processed or 0) >= n and held == 0


def one_run(binary: str, flags: Sequence[str], n: int, timeout: float) -> float:
    """Jobs per second of binary draining n pre-loaded jobs."""
    with _procs.RedisServer() as server:
        r = server.client()
        staging = NS + "bench:staging"
        preload(r, n, staging)
        r.sadd(NS + "queues", QUEUE)
        cores = os.cpu_count() or 1
        env = {**os.environ, "GOMAXPROCS": str(cores)}
        args = [
            "-uri",
            server.url,
            "-namespace",
            NS,
            "-queues",
            QUEUE,
            "-hostname",
            "bench",
            "-log-level",
            "warn",
            *flags,
        ]
        worker = _procs.WorkerProcess(binary, args, env=env)
        try:
            inflight = NS + "gomap:inflight:{" + NS + "queue:" + QUEUE + "}:" + worker.id
            t0 = time.perf_counter()
            r.rename(staging, NS + "queue:" + QUEUE)
            deadline = time.monotonic() + timeout
            while not drained(r, n, inflight):
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{binary} did not drain {n} jobs within {timeout:g}s: "
                        f"stat:processed = {r.get(NS + 'stat:processed')!r}"
                    )
                time.sleep(0.002)  # a poll interval, not synchronisation: the loop ends on the state
            elapsed = time.perf_counter() - t0
            failed = int(r.get(NS + "stat:failed") or 0)
            processed = int(r.get(NS + "stat:processed") or 0)
            if failed or processed != n:
                raise RuntimeError(f"{binary}: {processed} processed, {failed} failed, want {n} and 0")
        finally:
            worker.stop(timeout=30)
            r.close()
    return n / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds one run may take to drain")
    ap.add_argument("--baseline", default="/tmp/prev-gomap-worker", help="the worker binary to compare with")
    ap.add_argument("--binary", default=None, help="this tree's worker binary (default: built from worker/)")
    ap.add_argument("--config", choices=["25", "embedded", "both"], default="both")
    args = ap.parse_args()
    current = _binary.worker_binary(args.binary)
    if not os.access(args.baseline, os.X_OK):
        sys.exit(f"no baseline worker binary at {args.baseline}: pass --baseline")
    chosen = configs()
    if args.config != "both":
        chosen = {k: v for k, v in chosen.items() if k.startswith("concurrency 25") == (args.config == "25")}
    for name, flags in chosen.items():
        rates: dict[str, list[float]] = {"this tree": [], "baseline": []}
        for _ in range(args.runs):
            rates["baseline"].append(one_run(args.baseline, flags, args.jobs, args.timeout))
            rates["this tree"].append(one_run(current, flags, args.jobs, args.timeout))
        med = {k: statistics.median(v) for k, v in rates.items()}
        runs = {k: ", ".join(f"{x:,.0f}" for x in v) for k, v in rates.items()}
        print(f"{name}: {args.jobs:,} jobs, {args.runs} runs each")
        print(f"  baseline  {med['baseline']:>9,.0f} jobs/s median  ({runs['baseline']})")
        print(f"  this tree {med['this tree']:>9,.0f} jobs/s median  ({runs['this tree']})")
        print(f"  ratio     {med['this tree'] / med['baseline']:.2f}x")


if __name__ == "__main__":
    main()
