"""The progress bar: what it costs on W1, and how often it moves on slow items.

    .venv/bin/python benchmarks/progress.py                     # this tree
    .venv/bin/python benchmarks/progress.py --compare ../other  # W1 against another checkout too

W1 is 1M ``sampleadd`` pairs through ``gomap.map`` on the embedded default, with the bar on (drawn
to /dev/null) and off. With ``--compare``, the same W1 runs in a child Python on the other checkout
(its gomap and its worker binary, this file's W1), alternating with this tree's runs, so both see the same machine.

The cadence part runs ``samplesleep`` batches and records, from the bar's own redraws, the longest
time the shown count stood still between its first move and the end, and how far behind the items
done (as the workers report them) it ever was.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import gomap


def w1(runs: int) -> dict[str, list[float]]:
    """Items/s of W1, bar on and bar off, ``runs`` times each (after a warm-up)."""
    out: dict[str, list[float]] = {"bar": [], "no bar": []}
    pairs = [(i, i) for i in range(1_000_000)]
    with gomap.LocalCluster(quiet=True) as cluster, gomap.Client(cluster.url) as client, open(os.devnull, "w") as null:
        gomap.map("sampleadd", pairs[:10_000], client=client, progress=False)
        for _ in range(runs):
            for label, progress in (("bar", True), ("no bar", False)):
                t0 = time.perf_counter()
                gomap.map("sampleadd", pairs, client=client, progress=progress, tqdm_kwargs={"file": null})
                out[label].append(len(pairs) / (time.perf_counter() - t0))
    return out


def cadence(seconds: float, items: int) -> tuple[float, float, float]:
    """Run ``items`` x samplesleep(seconds) with a bar; return the run's time, the longest stand-still
    of the shown count (from its first move to the end), and the bar's redraw count per second."""
    from tqdm import tqdm

    draws: list[tuple[float, int]] = []

    class Recording(tqdm):  # type: ignore[misc]
        def refresh(self, *args: object, **kwargs: object) -> None:
            draws.append((time.monotonic(), int(self.n)))

    t0 = time.monotonic()
    gomap.map("samplesleep", [seconds] * items, tqdm_class=Recording, progress=True)
    took = time.monotonic() - t0
    moves = [t for (_, prev), (t, n) in itertools.pairwise(draws) if n != prev]
    stills = [b - a for a, b in itertools.pairwise(moves)]
    return took, max(stills, default=0.0), len(draws) / took


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--compare", help="another checkout of gomap: run W1 there too, alternately")
    ap.add_argument("--w1-json", action="store_true", help=argparse.SUPPRESS)  # a child run of --compare
    args = ap.parse_args()
    if args.w1_json:
        print(json.dumps(w1(1)))
        return
    here: dict[str, list[float]] = {"bar": [], "no bar": []}
    there: dict[str, list[float]] = {"bar": [], "no bar": []}
    for _ in range(args.runs):
        for label, xs in w1(1).items():
            here[label].extend(xs)
        if args.compare:
            other = Path(args.compare).resolve()
            env = {**os.environ, "PYTHONPATH": str(other)}
            res = subprocess.run(
                [sys.executable, str(Path(__file__).resolve()), "--w1-json"],  # this W1, the other's gomap
                env=env, cwd=other, capture_output=True, text=True, check=True, timeout=600,
            )  # fmt: skip
            for label, xs in json.loads(res.stdout.strip().splitlines()[-1]).items():
                there[label].extend(xs)
    print(f"W1, 1M sampleadd on the embedded default, median of {args.runs} runs:")
    for label in ("bar", "no bar"):
        line = f"  {label:6}: {statistics.median(here[label]):,.0f} items/s"
        if args.compare:
            ratio = statistics.median(here[label]) / statistics.median(there[label])
            line += f"   other tree {statistics.median(there[label]):,.0f} items/s   this/other {ratio:.3f}"
        print(line)
    if args.compare:
        return
    print("cadence of the bar on slow items (embedded default):")
    for seconds, items in ((0.5, 24), (0.2, 200), (2.0, 40)):
        took, still, per_s = cadence(seconds, items)
        print(
            f"  {items} x samplesleep({seconds}): {took:.1f}s, the count stood still at most {still:.2f}s, "
            f"{per_s:.1f} redraws/s"
        )


if __name__ == "__main__":
    main()
