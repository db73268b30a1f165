"""Your own functions: compile time cold and warm, the pause of a worker swap, and a haversine
over a frame next to the same function in pure Python with df.apply(axis=1).

    .venv/bin/python benchmarks/compile.py [--rows 1000000]

- cold: a compile into an empty gomap cache (Go's own build cache stays as it is; the first
  compile on a new machine also compiles go-redis once, which this does not measure);
- warm: the same source again in a fresh Python process: a cache hit, which must not run Go
  (target: at most 0.5 s for the call);
- swap: how long LocalCluster.swap takes, and the longest time a running batch of short items
  went without a completed chunk around the swap (the pause a user could see);
- speedup: df.gomap.apply(Haversine) against df.apply(axis=1) with the same function in Python.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import pandas as pd

import gomap
from gomap import _compile

HAVERSINE = """
import "math"

// Haversine is the great-circle distance in km between two points given in degrees.
func Haversine(lat1, lon1, lat2, lon2 float64) float64 {
	dlat, dlon := radians(lat2-lat1), radians(lon2-lon1)
	s1, s2 := math.Sin(dlat/2), math.Sin(dlon/2)
	a := s1*s1 + math.Cos(radians(lat1))*math.Cos(radians(lat2))*s2*s2
	return 2 * 6371.0 * math.Asin(math.Sqrt(a))
}

func radians(deg float64) float64 { return deg * math.Pi / 180 }
"""

WARM = """
import sys, time
t0 = time.perf_counter()
import gomap
t1 = time.perf_counter()
gomap.compile(sys.stdin.read())
print(f"{t1 - t0:.3f} {time.perf_counter() - t1:.3f}")
"""


def compile_times() -> None:
    with tempfile.TemporaryDirectory(prefix="gomap-bench-cache-") as cache:
        env = {**os.environ, "GOMAP_CACHE_DIR": cache}
        for label in ("cold", "warm"):
            out = subprocess.run(
                [sys.executable, "-c", WARM], input=HAVERSINE, env=env, capture_output=True, text=True, check=True
            )
            imported, compiled = map(float, out.stdout.split())
            print(f"compile {label}: {compiled:.3f}s (import gomap {imported:.3f}s, in a fresh process)")


def swap_pause() -> None:
    src_a = "func Twice(x int) int { return 2 * x }\n"
    src_b = "func Thrice(x int) int { return 3 * x }\n"
    a, b = _compile.build([src_a]), _compile.build([src_b])
    with gomap.LocalCluster(quiet=True, worker_binary=str(a.binary)) as cluster, gomap.Client(cluster.url) as client:
        stamps: list[float] = []
        done = threading.Event()

        def run() -> None:
            items = [0.002] * 3000  # 6 s of 2 ms items, one chunk each, on the workers' slots
            for _ in gomap.imap("samplesleep", items, chunksize=1, client=client, progress=False, window=64):
                stamps.append(time.perf_counter())
            done.set()

        t = threading.Thread(target=run)
        t.start()
        deadline = time.monotonic() + 60
        while len(stamps) < 200 and time.monotonic() < deadline:  # the batch is well under way
            time.sleep(0.01)
        t0 = time.perf_counter()
        cluster.swap(str(b.binary))
        t1 = time.perf_counter()
        t.join(120)
        around = [s for s in stamps if t0 - 1 <= s <= t1 + 1]
        gap = max(y - x for x, y in itertools.pairwise(around))
        ok = done.is_set() and len(stamps) == 3000
        print(f"swap: {t1 - t0:.3f}s for swap(); longest gap between results around it {gap * 1000:.1f} ms; "
              f"batch complete: {ok}")  # fmt: skip


def speedup(rows: int) -> None:
    gomap.compile(HAVERSINE)
    rng = np.random.default_rng(42)
    cols = ["lat1", "lon1", "lat2", "lon2"]
    df = pd.DataFrame({c: rng.uniform(-60, 60, rows) if c[:3] == "lat" else rng.uniform(-180, 180, rows) for c in cols})
    with gomap.LocalCluster(quiet=True) as cluster, gomap.Client(cluster.url) as client:
        df.head(100).gomap.apply("Haversine", columns=cols, client=client, progress=False)  # warm up
        t0 = time.perf_counter()
        got = df.gomap.apply("Haversine", columns=cols, client=client, progress=False)
        t_gomap = time.perf_counter() - t0

    def haversine(row: pd.Series) -> float:
        dlat, dlon = math.radians(row.lat2 - row.lat1), math.radians(row.lon2 - row.lon1)
        s1, s2 = math.sin(dlat / 2), math.sin(dlon / 2)
        a = s1 * s1 + math.cos(math.radians(row.lat1)) * math.cos(math.radians(row.lat2)) * s2 * s2
        return 2 * 6371.0 * math.asin(math.sqrt(a))

    t0 = time.perf_counter()
    want = df.apply(haversine, axis=1)
    t_apply = time.perf_counter() - t0
    assert np.allclose(got, want, rtol=1e-12)
    print(
        f"haversine over {rows:,} rows: df.gomap.apply {t_gomap:.3f}s, df.apply(axis=1) {t_apply:.3f}s, "
        f"{t_apply / t_gomap:.1f}x faster"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    args = ap.parse_args()
    compile_times()
    swap_pause()
    speedup(args.rows)


if __name__ == "__main__":
    main()
