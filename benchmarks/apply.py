"""W3: df.gomap.apply against df.apply(axis=1), and a frame of 10M rows in bounded memory.

    .venv/bin/python benchmarks/apply.py [--rows 200000] [--repeat 5] [--big 10000000] [--json FILE]

The frame is ``a = i``, ``b = (i*7919) % 1000003``; the function is ``sampleadd``, on the embedded
default. Every result is checked against ``df.a + df.b`` before its time counts. Three timings in
the same run: the columnar path (numeric columns travel as columnar chunks, docs/protocol.md), the
row path (one tuple per row, as before columnar chunks; forced here), and ``df.apply(axis=1)``.
Target (issue 10, W3): the columnar path at least 30x ``df.apply``.

``--big`` runs df.gomap.apply over that many rows in a child process and reports its peak RSS
above the RSS it had with the frame built, against the frame's own size (0 skips it).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

import gomap
from gomap import _pandas


def frame(rows: int) -> pd.DataFrame:
    i = np.arange(rows, dtype=np.int64)
    return pd.DataFrame({"a": i, "b": (i * 7919) % 1000003})


def timed(call: Callable[[], pd.Series], want: pd.Series, repeat: int) -> list[float]:
    """Seconds of each of repeat calls; each result is checked first."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        got = call()
        times.append(time.perf_counter() - t0)
        if not got.equals(want):
            raise SystemExit(f"wrong result: {got.head()} (dtype {got.dtype}), want {want.head()}")
    return times


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory_child(rows: int) -> None:
    """In a fresh process: the peak RSS of one df.gomap.apply over rows, above the RSS with the frame built."""
    with gomap.LocalCluster(quiet=True) as cluster, gomap.Client(cluster.url) as client:
        frame(1000).gomap.apply("sampleadd", client=client, progress=False)  # the worker and the connection
        df = frame(rows)
        base = rss()
        t0 = time.perf_counter()
        got = df.gomap.apply("sampleadd", columns=["a", "b"], client=client, progress=False)
        seconds = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        ok = bool((got.to_numpy() == (df["a"] + df["b"]).to_numpy()).all()) and got.dtype == np.int64
    frame_bytes = int(df.memory_usage(index=True, deep=True).sum())
    out = {"rows": rows, "frame": frame_bytes, "base_rss": base, "peak_rss": peak, "seconds": seconds, "ok": ok}
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--big", type=int, default=10_000_000, help="rows of the memory run (0: skip it)")
    ap.add_argument("--json", help="write the figures to this file")
    ap.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        memory_child(args.memory_child)
        return

    df = frame(args.rows)
    want = df["a"] + df["b"]
    rows_path = _pandas._reads_columns
    with gomap.LocalCluster(quiet=True) as cluster, gomap.Client(cluster.url) as client:
        df.head(1000).gomap.apply("sampleadd", client=client, progress=False)  # warm up
        columnar = timed(lambda: df.gomap.apply("sampleadd", columns=["a", "b"], client=client, progress=False),
                         want, args.repeat)  # fmt: skip
        _pandas._reads_columns = lambda fn, options: False  # the row path, as before columnar chunks
        try:
            rows = timed(lambda: df.gomap.apply("sampleadd", columns=["a", "b"], client=client, progress=False),
                         want, args.repeat)  # fmt: skip
        finally:
            _pandas._reads_columns = rows_path
    apply = timed(lambda: df.apply(lambda r: r.a + r.b, axis=1), want, max(1, min(args.repeat, 2)))

    best: dict[str, Any] = {"columnar": min(columnar), "rows": min(rows), "df.apply": min(apply)}
    median = {"columnar": statistics.median(columnar), "rows": statistics.median(rows)}
    print(f"W3, {args.rows:,} rows, sampleadd(a, b); best of {args.repeat} (median)")
    for name in ("columnar", "rows"):
        print(
            f"  df.gomap.apply, {name + ' path':14} {best[name] * 1e3:8.1f} ms ({median[name] * 1e3:.1f})"
            f"   {best['df.apply'] / best[name]:5.1f}x df.apply"
        )
    print(f"  df.apply(axis=1)             {best['df.apply'] * 1e3:8.1f} ms")
    result: dict[str, Any] = {"rows": args.rows, "best_s": best, "median_s": median}
    if args.big:
        child = subprocess.run(
            [sys.executable, __file__, "--memory-child", str(args.big)], capture_output=True, text=True, check=True
        )
        mem = json.loads(child.stdout.strip().splitlines()[-1])
        if not mem["ok"]:
            raise SystemExit(f"wrong result over {args.big:,} rows")
        grew = mem["peak_rss"] - mem["base_rss"]
        print(
            f"  {mem['rows']:,} rows: {mem['seconds']:.2f} s; frame {mem['frame'] / 2**20:.0f} MiB, "
            f"peak RSS {grew / 2**20:.0f} MiB above the RSS with the frame built "
            f"({grew / mem['frame']:.2f}x the frame)"
        )
        result["big"] = mem
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
