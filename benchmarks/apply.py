"""df.gomap.apply against df.apply(axis=1) on a 200,000-row frame of two int columns.

    .venv/bin/python benchmarks/apply.py [--rows 200000]

Target (docs): at least 10x df.apply(axis=1) with sampleadd, end to end on the embedded default.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

import gomap


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=200_000)
    args = ap.parse_args()
    rng = np.random.default_rng(1)
    df = pd.DataFrame({"a": rng.integers(0, 1000, args.rows), "b": rng.integers(0, 1000, args.rows)})
    with gomap.LocalCluster(quiet=True) as cluster, gomap.Client(cluster.url) as client:
        df.head(1000).gomap.apply("sampleadd", client=client, progress=False)  # warm up
        t0 = time.perf_counter()
        got = df.gomap.apply("sampleadd", columns=["a", "b"], client=client, progress=False)
        t_gomap = time.perf_counter() - t0
    t0 = time.perf_counter()
    want = df.apply(lambda r: r["a"] + r["b"], axis=1)
    t_apply = time.perf_counter() - t0
    assert got.equals(want)
    print(
        f"{args.rows:,} rows: df.gomap.apply {t_gomap:.3f}s, df.apply(axis=1) {t_apply:.3f}s, "
        f"{t_apply / t_gomap:.1f}x faster"
    )


if __name__ == "__main__":
    main()
