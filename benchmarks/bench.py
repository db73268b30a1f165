"""Every benchmark case of issue 10 in one run, each beside its baseline, with every result checked
before its time counts. Prints one table and writes the figures as JSON.

    ./dev bench [--quick] [--only w1,w3] [--json bench.json] [--baseline-worker PATH] [--w1-n N] …
    .venv/bin/python benchmarks/bench.py --help

Cases (and their baselines, measured in the same run):

- w1       gomap.map("sampleadd") over N pairs on the embedded default; serial Python,
           multiprocessing.Pool(2).starmap(chunksize=5000). Target: >= 1.5x Pool(2).
- w2       countprimes over N inputs (200000 + i) on the embedded default; the same loop in pure Go
           with no broker (BenchmarkCountPrimesNoBroker in worker/samples), Pool(2).map.
- w3       df.gomap.apply("sampleadd", columns=["a", "b"]) over N rows; df.apply(axis=1).
           Target: >= 30x df.apply.
- w4       N x samplesleep(0.01) on the embedded default; ThreadPoolExecutor(64) over
           time.sleep(0.01). Target: >= 3x the thread pool.
- plain    N pre-loaded Ruby-format sampleadd jobs drained by this tree's worker; the previous
           commit's binary (--baseline-worker, default /tmp/prev-gomap-worker when present).
           Target: >= 2.5x the baseline's jobs/s.
- latency  one-item call p50/p99 with warm idle workers (as benchmarks/latency.py); a Redis PING
           round trip as the floor. Targets: p50 <= 0.2 ms, p99 <= 0.5 ms.
- imap     client RSS growth over imap of an N-item generator (every result checked in order).
- start    cold start (a fresh Python: import gomap, the embedded default, the first result) and
           warm start (LocalCluster in a running Python to the first result); Pool(2) the same way.

Every timing is the best of --repeat runs (each run checked), gomap and baseline alike. The worker
binary is built (and cached) before anything is timed. Every process started is stopped by PID.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import redis
from _common import percentile, redis_server, workers

import gomap
from gomap import _binary, _codec, _procs

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CASES = ("w1", "w2", "w3", "w4", "plain", "latency", "imap", "start")
DEFAULT_BASELINE_WORKER = "/tmp/prev-gomap-worker"

# Sizes of a full run, and of --quick (a smoke run of a few seconds).
FULL = {"w1": 1_000_000, "w2": 48, "w3": 200_000, "w4": 2_000, "plain": 100_000, "latency": 2_000,
        "imap": 10_000_000, "start": 3}  # fmt: skip
QUICK = {"w1": 2_000, "w2": 4, "w3": 2_000, "w4": 40, "plain": 2_000, "latency": 50, "imap": 20_000, "start": 1}
W2_BASE = {"full": 200_000, "quick": 2_000}  # countprimes(base + i)


class CheckFailed(Exception):
    """A result was wrong: its time does not count."""


def check(ok: bool, what: str) -> None:
    if not ok:
        raise CheckFailed(what)


@dataclass
class Measure:
    label: str
    value: float
    unit: str  # "s", "ms", "jobs/s", "MB"


@dataclass
class Result:
    case: str
    title: str
    n: int
    check: str = "not run"  # "passed", "failed: …", "error: …", "skipped: …"
    measures: list[Measure] = field(default_factory=list)
    ratio: float | None = None  # how many times better than the baseline the target names
    ratio_of: str = ""
    target: str = ""
    met: bool | None = None
    notes: list[str] = field(default_factory=list)


def best(repeat: int, run: Callable[[], Any], verify: Callable[[Any], None]) -> float:
    """The best time of ``repeat`` runs of ``run``; each run's result is verified first."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        got = run()
        elapsed = time.perf_counter() - t0
        verify(got)
        times.append(elapsed)
    return min(times)


def add(a: int, b: int) -> int:
    return a + b


def count_primes(n: int) -> int:
    """countprimes in Python: the same trial division as samples.CountPrimes."""
    count = 0
    for p in range(2, n + 1):
        d = 2
        while d * d <= p:
            if p % d == 0:
                break
            d += 1
        else:
            count += 1
    return count


def sleep_for(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.repeat: int = args.repeat
        self.binary = _binary.worker_binary()  # built (and cached) before anything is timed
        self._cluster: gomap.LocalCluster | None = None
        self._client: gomap.Client | None = None

    def client(self) -> gomap.Client:
        """A Client of the embedded default's shape (a LocalCluster on every core), started once."""
        if self._client is None:
            self._cluster = gomap.LocalCluster(quiet=True, worker_binary=self.binary).start()
            self._client = gomap.Client(self._cluster.url)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()

    def pool(self) -> Any:
        return multiprocessing.get_context("fork").Pool(2)

    # -- cases ---------------------------------------------------------------------------------

    def w1(self, r: Result) -> None:
        pairs = [(i, (i * 7919) % 1_000_003) for i in range(r.n)]
        want = [a + b for a, b in pairs]

        def verify(got: Any) -> None:
            check(got == want, "sampleadd results differ from a + b")

        client = self.client()
        gomap.map("sampleadd", pairs[:10_000], client=client, progress=False)  # warm up
        t_gomap = best(self.repeat, lambda: gomap.map("sampleadd", pairs, client=client, progress=False), verify)
        t_serial = best(self.repeat, lambda: [add(a, b) for a, b in pairs], verify)
        with self.pool() as pool:
            pool.starmap(add, pairs[:10_000], chunksize=5000)  # warm up
            t_pool = best(self.repeat, lambda: pool.starmap(add, pairs, chunksize=5000), verify)
        r.measures = [
            Measure("gomap.map (embedded default)", t_gomap, "s"),
            Measure("serial Python", t_serial, "s"),
            Measure("Pool(2).starmap(chunksize=5000)", t_pool, "s"),
        ]
        r.ratio, r.ratio_of, r.target = t_pool / t_gomap, "Pool(2) / gomap", ">= 1.5x Pool(2)"
        r.met = r.ratio >= 1.5

    def w2(self, r: Result) -> None:
        base = W2_BASE["quick" if self.args.quick else "full"]
        inputs = [base + i for i in range(r.n)]
        t_go, go_sum = go_countprimes(inputs, self.repeat)
        client = self.client()
        gomap.map("countprimes", inputs[:2], client=client, progress=False)  # warm up
        want: list[int] = []

        def verify_gomap(got: Any) -> None:
            nonlocal want
            if not want:
                check(sum(got) == go_sum, f"countprimes sum {sum(got)} differs from pure Go's {go_sum}")
                want = list(got)
            check(got == want, "countprimes results differ between runs")

        t_gomap = best(
            self.repeat, lambda: gomap.map("countprimes", inputs, client=client, progress=False), verify_gomap
        )

        def verify_pool(got: Any) -> None:
            check(got == want, "Python's countprimes differs from gomap's")

        with self.pool() as pool:
            pool.map(count_primes, [10, 20])  # warm up
            t_pool = best(self.repeat, lambda: pool.map(count_primes, inputs, chunksize=1), verify_pool)
        r.measures = [
            Measure("gomap.map (embedded default)", t_gomap, "s"),
            Measure("pure Go, no broker (GOMAXPROCS goroutines)", t_go, "s"),
            Measure("Pool(2).map(chunksize=1), Python loop", t_pool, "s"),
        ]
        r.ratio, r.ratio_of = t_go / t_gomap, "pure Go / gomap"
        r.target = "about the pure-Go bound (issue: within 2 %)"
        r.notes.append(f"inputs countprimes({base} + i), i < {r.n}; Pool(2) / gomap = {t_pool / t_gomap:.1f}x")

    def w3(self, r: Result) -> None:
        i = np.arange(r.n, dtype=np.int64)
        df = pd.DataFrame({"a": i, "b": (i * 7919) % 1_000_003})
        expected = (df["a"] + df["b"]).to_numpy()

        def verify(got: Any) -> None:
            check(isinstance(got, pd.Series) and got.index.equals(df.index), "the result is not aligned to the frame")
            check(np.array_equal(got.to_numpy(), expected), "the row sums differ from a + b")

        client = self.client()
        df.head(1000).gomap.apply("sampleadd", columns=["a", "b"], client=client, progress=False)  # warm up
        t_gomap = best(
            self.repeat,
            lambda: df.gomap.apply("sampleadd", columns=["a", "b"], client=client, progress=False),
            verify,
        )
        t_apply = best(self.repeat, lambda: df.apply(lambda row: row.a + row.b, axis=1), verify)
        r.measures = [
            Measure('df.gomap.apply("sampleadd", columns=["a","b"])', t_gomap, "s"),
            Measure("df.apply(lambda r: r.a + r.b, axis=1)", t_apply, "s"),
        ]
        r.ratio, r.ratio_of, r.target = t_apply / t_gomap, "df.apply / gomap", ">= 30x df.apply"
        r.met = r.ratio >= 30

    def w4(self, r: Result) -> None:
        items = [0.01] * r.n

        def verify(got: Any) -> None:
            check(list(got) == items, "samplesleep did not return its argument for every item")

        client = self.client()
        gomap.map("samplesleep", [0.001] * 4, client=client, progress=False)  # warm up
        t_gomap = best(self.repeat, lambda: gomap.map("samplesleep", items, client=client, progress=False), verify)
        with concurrent.futures.ThreadPoolExecutor(64) as ex:
            list(ex.map(sleep_for, [0.001] * 64))  # warm up: the threads exist
            t_threads = best(self.repeat, lambda: list(ex.map(sleep_for, items)), verify)
        r.measures = [
            Measure("gomap.map samplesleep(0.01) (embedded default)", t_gomap, "s"),
            Measure("ThreadPoolExecutor(64) time.sleep(0.01)", t_threads, "s"),
        ]
        r.ratio, r.ratio_of, r.target = t_threads / t_gomap, "threads / gomap", ">= 3x ThreadPoolExecutor(64)"
        r.met = r.ratio >= 3

    def plain(self, r: Result) -> None:
        baseline = self.args.baseline_worker
        flags = ["-concurrency", "25"]
        rates: dict[str, list[float]] = {"this tree": [], "baseline": []}
        runs = [("this tree", self.binary)]
        if baseline and os.access(baseline, os.X_OK):
            runs.append(("baseline", baseline))
        elif baseline:
            r.notes.append(f"no baseline column: {baseline} is not an executable worker (--baseline-worker PATH)")
        else:
            r.notes.append("no baseline column: --baseline-worker ''")
        for _ in range(self.repeat):
            for name, binary in runs:
                rates[name].append(drain_rate(binary, flags, r.n, self.args.plain_timeout))
        r.measures = [Measure("this tree's worker, -concurrency 25", max(rates["this tree"]), "jobs/s")]
        r.target = ">= 2.5x the previous commit's jobs/s"
        if rates["baseline"]:
            r.measures.append(Measure(f"baseline worker {baseline}", max(rates["baseline"]), "jobs/s"))
            r.ratio, r.ratio_of = max(rates["this tree"]) / max(rates["baseline"]), "this tree / baseline"
            r.met = r.ratio >= 2.5
        r.notes.append("timed from the RENAME of the pre-loaded list onto the idle worker's queue to drained")

    def latency(self, r: Result) -> None:
        with redis_server() as url, workers(url, 1, concurrency=25, gomaxprocs=os.cpu_count() or 1):
            with gomap.Client(url) as client:
                fn = gomap.function("sampleadd", client=client)
                for i in range(100):  # warm up
                    check(fn(i, 2) == i + 2, "sampleadd(i, 2) != i + 2")
                lat = []
                for i in range(r.n):
                    t0 = time.perf_counter()
                    got = fn(i, 1)
                    lat.append((time.perf_counter() - t0) * 1000)
                    check(got == i + 1, f"sampleadd({i}, 1) returned {got!r}")
            ping = []
            with redis.Redis.from_url(url) as rc:
                rc.ping()
                for _ in range(r.n):
                    t0 = time.perf_counter()
                    check(rc.ping() is True, "PING did not answer")
                    ping.append((time.perf_counter() - t0) * 1000)
        p50, p99 = percentile(lat, 50), percentile(lat, 99)
        r.measures = [
            Measure("one-item call p50", p50, "ms"),
            Measure("one-item call p99", p99, "ms"),
            Measure("Redis PING round trip p50 (the floor)", percentile(ping, 50), "ms"),
        ]
        r.target = "p50 <= 0.2 ms, p99 <= 0.5 ms"
        r.met = p50 <= 0.2 and p99 <= 0.5
        r.notes.append("1 worker process, -concurrency 25, on all sample queues, as benchmarks/latency.py")

    def imap(self, r: Result) -> None:
        # In a fresh Python, so that memory freed by the other cases cannot hide the growth.
        url = self.client().url
        out = json.loads(
            fresh_python(IMAP_CODE, {**os.environ, "PYTHONPATH": str(HERE), "BENCH_URL": url, "BENCH_N": str(r.n)}, 600)
        )
        check(out["count"] == r.n, f"imap gave {out['count']} results in order for {r.n} items")
        r.measures = [
            Measure("client RSS growth (fresh Python)", out["growth"] / 2**20, "MB"),
            Measure("time", out["seconds"], "s"),
            Measure("a list of the same pairs would hold (for scale)", r.n * 120 / 2**20, "MB"),
        ]
        r.target = "bounded: growth independent of N"
        r.notes.append("RSS sampled every 65,536 results; the list figure is about 120 bytes per (int, int) tuple")

    def start(self, r: Result) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("GOMAP_REDIS_URL", "REDIS_URL")}
        env["GOMAP_WORKER_BINARY"] = self.binary
        cold_gomap = "import gomap\nprint(gomap.map('sampleadd', [(1, 2)], progress=False), flush=True)\n"
        cold_pool = (
            "import multiprocessing, operator\n"
            "with multiprocessing.get_context('fork').Pool(2) as p:\n"
            "    print(p.starmap(operator.add, [(1, 2)]), flush=True)\n"
        )
        t_cold = best(self.repeat_start(r), lambda: fresh_python(cold_gomap, env), lambda out: check_first(out))
        t_cold_pool = best(self.repeat_start(r), lambda: fresh_python(cold_pool, env), lambda out: check_first(out))

        def warm_gomap() -> list[Any]:
            with (
                gomap.LocalCluster(quiet=True, worker_binary=self.binary) as cluster,
                gomap.Client(cluster.url) as client,
            ):
                return gomap.map("sampleadd", [(1, 2)], client=client, progress=False)

        def warm_pool() -> list[Any]:
            with self.pool() as pool:
                return pool.starmap(add, [(1, 2)])

        t_warm = best(self.repeat_start(r), warm_gomap, lambda got: check(got == [3], f"first result {got!r}"))
        t_warm_pool = best(self.repeat_start(r), warm_pool, lambda got: check(got == [3], f"first result {got!r}"))
        r.measures = [
            Measure("cold: fresh Python to gomap's first result", t_cold, "s"),
            Measure("cold: fresh Python to Pool(2)'s first result", t_cold_pool, "s"),
            Measure("warm: LocalCluster to the first result", t_warm, "s"),
            Measure("warm: Pool(2) to the first result", t_warm_pool, "s"),
        ]
        r.target = "warm start <= 1 s (docs/design.md)"
        r.met = t_warm <= 1.0
        r.notes.append("worker binary already built; cold includes the interpreter's start and import gomap")

    def repeat_start(self, r: Result) -> int:
        return r.n


IMAP_CODE = """
import json, os, time
import gomap
from _common import rss_bytes
n = int(os.environ["BENCH_N"])
with gomap.Client(os.environ["BENCH_URL"]) as client:
    list(gomap.imap("sampleadd", ((i, 1) for i in range(10_000)), client=client, progress=False))  # warm up
    before = peak = rss_bytes()
    t0 = time.perf_counter()
    count = 0
    for got in gomap.imap("sampleadd", ((i, 1) for i in range(n)), client=client, progress=False):
        if got != count + 1:
            break  # a wrong result: the count says how far it was right
        count += 1
        if count % 65_536 == 0:
            peak = max(peak, rss_bytes())
    seconds = time.perf_counter() - t0
    peak = max(peak, rss_bytes())
print(json.dumps({"count": count, "growth": peak - before, "seconds": seconds}), flush=True)
"""


def check_first(out: str) -> None:
    check(out.strip() == "[3]", f"the first result was {out.strip()!r}, want [3]")


def fresh_python(code: str, env: dict[str, str], timeout: float = 60.0) -> str:
    """Run code in a new Python; return its first line of output as soon as it is written."""
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        proc.wait(timeout)
        if proc.returncode != 0:
            raise RuntimeError(
                f"a fresh Python exited with {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}"
            )
        return line
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def go_countprimes(inputs: Sequence[int], repeat: int) -> tuple[float, int]:
    """Seconds and sum of counts of countprimes over inputs in pure Go, with no broker: the best
    of ``repeat`` runs of BenchmarkCountPrimesNoBroker (worker/samples), compiled first."""
    env = _binary.go_env(os.environ)
    env["GOMAP_BENCH_COUNTPRIMES"] = ",".join(map(str, inputs))
    with tempfile.TemporaryDirectory(prefix="gomap-bench-") as tmp:
        test_bin = os.path.join(tmp, "samples.test")
        subprocess.run(
            ["go", "test", "-c", "-o", test_bin, "./samples"], cwd=ROOT / "worker", env=env, check=True, timeout=300
        )
        out = subprocess.run(
            [test_bin, "-test.run", "^$", "-test.bench", "^BenchmarkCountPrimesNoBroker$",
             "-test.benchtime", f"{repeat}x", "-test.count", "1"],
            cwd=ROOT / "worker" / "samples", env=env, capture_output=True, text=True, check=True, timeout=600,
        ).stdout  # fmt: skip
    m = re.search(r"BenchmarkCountPrimesNoBroker\S*\s+\d+\s+([\d.]+) ns/op\s+([\d.]+) primes/op", out)
    if m is None:
        raise RuntimeError(f"no benchmark line in the output of go test -bench:\n{out}")
    return float(m.group(1)) / 1e9, int(float(m.group(2)))


NS = "goworker:"
QUEUE = "sampleadd"


def drain_rate(binary: str, flags: Sequence[str], n: int, timeout: float = 300.0) -> float:
    """Jobs per second of ``binary`` draining n pre-loaded Ruby-format sampleadd jobs.

    The jobs are pushed to a staging list of a fresh redis-server; once the worker is idle and
    ready, one RENAME puts them on its queue (which wakes it) and the clock runs until the queue and
    the worker's in-flight list are empty and stat:processed is n, with no failure."""
    with _procs.RedisServer() as server, server.client() as r:
        staging = NS + "bench:staging"
        for lo in range(0, n, 5000):
            r.rpush(staging, *[_codec.dumps_resque(QUEUE, [i, i]) for i in range(lo, min(n, lo + 5000))])
        r.sadd(NS + "queues", QUEUE)
        env = {**os.environ, "GOMAXPROCS": str(os.cpu_count() or 1)}
        args = ["-uri", server.url, "-namespace", NS, "-queues", QUEUE, "-hostname", "bench", "-log-level", "warn"]
        worker = _procs.WorkerProcess(binary, [*args, *flags], env=env)
        try:
            inflight = NS + "gomap:inflight:{" + NS + "queue:" + QUEUE + "}:"
            t0 = time.perf_counter()
            r.rename(staging, NS + "queue:" + QUEUE)
            deadline = time.monotonic() + timeout
            while True:
                pipe = r.pipeline(transaction=False)
                pipe.llen(NS + "queue:" + QUEUE)
                pipe.get(NS + "stat:processed")
                queued, processed = pipe.execute()
                if queued == 0 and int(processed or 0) >= n:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{binary} did not drain {n} jobs within {timeout:g}s ({processed} processed)")
                time.sleep(0.002)  # a poll interval; the loop ends on Redis' state, not on time
            elapsed = time.perf_counter() - t0
            processed = int(r.get(NS + "stat:processed") or 0)
            failed = int(r.get(NS + "stat:failed") or 0)
            held = sum(r.llen(k) for k in r.scan_iter(inflight + "*"))
            check(processed == n and failed == 0 and r.llen(NS + "failed") == 0,
                  f"{binary}: {processed} processed, {failed} failed; want {n} and 0")  # fmt: skip
            check(held == 0, f"{binary}: {held} jobs still in flight after the drain")
        finally:
            worker.stop(timeout=30)
    return n / elapsed


# -- the run -----------------------------------------------------------------------------------

TITLES = {
    "w1": "W1 sampleadd pairs",
    "w2": "W2 countprimes inputs",
    "w3": "W3 frame rows",
    "w4": "W4 samplesleep(0.01) items",
    "plain": "plain jobs drained",
    "latency": "latency, one-item calls",
    "imap": "imap generator items",
    "start": "cold/warm start, runs",
}


def fmt(m: Measure) -> str:
    if m.unit == "jobs/s":
        return f"{m.value:,.0f} jobs/s"
    if m.unit == "ms":
        return f"{m.value:.3f} ms"
    if m.unit == "MB":
        return f"{m.value:.1f} MB"
    return f"{m.value:.3f} s"


def table(results: Sequence[Result]) -> str:
    lines = []
    for r in results:
        head = f"{r.title} (N={r.n:,})  check: {r.check}"
        lines.append(head)
        for m in r.measures:
            lines.append(f"    {m.label:58s} {fmt(m):>16s}")
        if r.ratio is not None:
            lines.append(f"    {'ratio ' + r.ratio_of:58s} {r.ratio:>15.2f}x")
        if r.target:
            met = {True: "met", False: "MISSED", None: "-"}[r.met]
            lines.append(f"    {'target ' + r.target:58s} {met:>16s}")
        for note in r.notes:
            lines.append(f"    note: {note}")
    return "\n".join(lines)


def tree_state() -> dict[str, Any]:
    def git(*a: str) -> str:
        out = subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True)
        return out.stdout.strip()

    changed = [line for line in git("status", "--porcelain").splitlines() if line]
    return {"head": git("rev-parse", "--short", "HEAD"), "uncommitted_files": len(changed)}


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny sizes, one run each: a smoke run of a few seconds")
    ap.add_argument("--only", action="append", default=[], help=f"run only these cases (comma-separated): {CASES}")
    ap.add_argument("--json", default="bench.json", help="where to write the results (default bench.json)")
    ap.add_argument("--repeat", type=int, default=None, help="runs per measurement, best counts (3; --quick 1)")
    ap.add_argument("--baseline-worker", default=None,
                    help=f"the previous commit's worker binary for plain jobs (default {DEFAULT_BASELINE_WORKER} "
                         "when present; '' for none)")  # fmt: skip
    ap.add_argument("--plain-timeout", type=float, default=300.0, help="seconds one drain of plain jobs may take")
    for case in CASES:
        ap.add_argument(f"--{case}-n", type=int, default=None, help=f"N of {case} (full {FULL[case]:,})")
    args = ap.parse_args(argv)
    only = [c for spec in args.only for c in spec.split(",") if c]
    unknown = [c for c in only if c not in CASES]
    if unknown:
        ap.error(f"unknown case {', '.join(unknown)}: the cases are {', '.join(CASES)}")
    args.cases = [c for c in CASES if not only or c in only]
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.baseline_worker is None:
        args.baseline_worker = DEFAULT_BASELINE_WORKER if os.path.exists(DEFAULT_BASELINE_WORKER) else ""
    return args


def run(args: argparse.Namespace) -> list[Result]:
    sizes = QUICK if args.quick else FULL
    bench = Bench(args)
    results = []
    try:
        for case in args.cases:
            n = getattr(args, f"{case}_n") or sizes[case]
            r = Result(case, TITLES[case], n)
            t0 = time.perf_counter()
            try:
                getattr(bench, case)(r)
                r.check = "passed"
            except CheckFailed as e:
                r.check, r.measures, r.ratio, r.met = f"failed: {e}", [], None, None
            except Exception as e:  # one broken case must not hide the others' figures
                r.check, r.measures, r.ratio, r.met = f"error: {type(e).__name__}: {e}", [], None, None
                traceback.print_exc()
            r.notes.append(f"case took {time.perf_counter() - t0:.1f}s")
            results.append(r)
            print(f"{case}: {r.check} ({r.notes[-1]})", flush=True)
    finally:
        bench.close()
    return results


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    t0 = time.perf_counter()
    results = run(args)
    doc = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "tree": tree_state(),
        "quick": args.quick,
        "repeat": args.repeat,
        "seconds": time.perf_counter() - t0,
        "cases": {r.case: asdict(r) for r in results},
    }
    Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\n== {len(results)} cases in {doc['seconds']:.0f}s; tree {doc['tree']}; JSON in {args.json}")
    print(table(results))
    return 0 if all(r.check == "passed" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
