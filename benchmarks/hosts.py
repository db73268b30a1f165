"""Items/s over worker hosts on real network links (issue 13, item 2): W1 (sampleadd over N pairs)
and the CPU-bound countprimes, with 1, 2 and 4 hosts at a 1 ms round trip, before one Redis node
or a 3-master Redis Cluster (--masters 3); and a hot function, Redis bound (issue 13, item 3):
sampleadd in many tiny chunks (--hot-chunksize 50) over the most hosts, so that Redis round trips,
not the items, dominate.

    .venv/bin/python benchmarks/hosts.py [--masters 1|3|1,3] [--items 1000000] [--hosts 1,2,4]
                                         [--rtt-ms 1.0] [--concurrency 2] [--repeat 3]
                                         [--hot-items 200000] [--hot-chunksize 50] [--shards 1,0]
                                         [--json hosts.json]

On a cluster the workers and the client reach the nodes at the addresses the nodes announce, each
host over its own link. The hot function runs once per ``--shards`` value, the workers' ``-shards``
(docs/protocol.md, "Sharded queues"): 1 keeps one queue on one master, 0 (the workers' default)
spreads it over as many shards as the cluster has masters. On one Redis node both are one queue.

Each host is a network namespace joined to Redis's by a veth pair of its own (tests/_hosts.py),
running one gomap-worker with a fixed ``-concurrency``; the client (this process) reaches Redis
over a link without delay. Every result is checked before its time counts; each figure is the
best of --repeat runs. Where namespaces cannot be made (not root, no iproute2), the hosts are
worker processes on loopback, and the output says so.

All hosts share this machine's cores: more hosts cannot mean more CPU. The figures show what the
links and the coordination cost, not how far a pool scales out; they are reported as they are.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import gomap  # noqa: E402
from gomap import _binary  # noqa: E402
from tests._hosts import Network  # noqa: E402


def primes_upto(n: int) -> list[int]:
    """pi(k) for every k <= n (a sieve): the expected countprimes results."""
    sieve = bytearray([1]) * (n + 1)
    sieve[0:2] = b"\0\0"
    for p in range(2, int(n**0.5) + 1):
        if sieve[p]:
            sieve[p * p :: p] = bytes(len(range(p * p, n + 1, p)))
    counts, c = [0] * (n + 1), 0
    for k in range(n + 1):
        c += sieve[k]
        counts[k] = c
    return counts


@contextlib.contextmanager
def pool(
    hosts: int, masters: int, args: argparse.Namespace, why: str, shards: int = 0
) -> Iterator[tuple[str, list[float], str]]:
    """The hosts, each with one worker (``-shards shards``), before one Redis node or a cluster of
    masters: yields (client URL, each host's measured RTT in ms, how)."""
    with Network(hosts=hosts, rtt_ms=args.rtt_ms, masters=masters, loopback=bool(why)) as net:
        for i in range(hosts):
            net.start_worker(i, "-shards", str(shards), concurrency=args.concurrency)
        if why:
            yield net.redis_url, [], "loopback (no link delay)"
        else:
            yield net.redis_url, [net.rtt(i) for i in range(hosts)], f"namespaces, delay by {net.delay_method}"


def best(repeat: int, run: Callable[[], list[Any]], want: list[Any]) -> float:
    """The best time of repeat runs; every run's results are checked first."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        got = run()
        elapsed = time.perf_counter() - t0
        if got != want:
            raise SystemExit(f"wrong results from {run}: the benchmark stops")
        times.append(elapsed)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=1_000_000, help="sampleadd pairs (W1)")
    ap.add_argument("--cpu-items", type=int, default=48, help="countprimes inputs: base + i")
    ap.add_argument("--cpu-base", type=int, default=200_000)
    ap.add_argument("--hosts", default="1,2,4")
    ap.add_argument("--masters", default="1", help="1 (one Redis node), 3 (a Redis Cluster), or both: 1,3")
    ap.add_argument("--hot-items", type=int, default=200_000, help="sampleadd pairs of the hot-function case")
    ap.add_argument("--hot-chunksize", type=int, default=50, help="the hot-function case's chunksize")
    ap.add_argument("--shards", default="1,0", help="the workers' -shards for the hot function (0: one per master)")
    ap.add_argument("--rtt-ms", type=float, default=1.0)
    ap.add_argument("--concurrency", type=int, default=2, help="each host's worker -concurrency")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--loopback", action="store_true", help="worker processes on loopback, no namespaces")
    ap.add_argument("--json", default="hosts.json", help="where to write the figures")
    args = ap.parse_args()
    counts = [int(h) for h in args.hosts.split(",")]
    masters = [int(m) for m in args.masters.split(",")]
    hot_shards = [int(x) for x in args.shards.split(",")]
    why = "asked for with --loopback" if args.loopback else Network.available()
    if why:
        print(f"worker hosts on loopback, not on delayed links: {why}")
    _binary.worker_binary()  # built (and cached) before anything is timed
    cores = os.cpu_count() or 1
    pairs = [(i, (i * 7919) % 1_000_003) for i in range(args.items)]
    want_add = [a + b for a, b in pairs]
    cpu_in = [args.cpu_base + i for i in range(args.cpu_items)]
    pi = primes_upto(args.cpu_base + args.cpu_items)
    want_cpu = [pi[n] for n in cpu_in]
    hot_pairs = pairs[: args.hot_items]
    want_hot = want_add[: args.hot_items]
    rows, hot = [], []
    for m in masters:
        for hosts in counts:
            with pool(hosts, m, args, why) as (url, rtts, how), gomap.Client(url) as client:

                def run(fn: str, xs: list[Any], **kw: Any) -> Callable[[], list[Any]]:
                    return lambda: gomap.map(fn, xs, client=client, progress=False, **kw)

                run("sampleadd", pairs[:10_000])()  # warm up
                w1 = best(args.repeat, run("sampleadd", pairs), want_add)
                cpu = best(args.repeat, run("countprimes", cpu_in), want_cpu)
                row = {"masters": m, "hosts": hosts, "how": how, "rtt_ms": rtts, "w1_items_per_s": args.items / w1,
                       "w1_seconds": w1, "cpu_items_per_s": args.cpu_items / cpu, "cpu_seconds": cpu}  # fmt: skip
                rows.append(row)
            print(f"  {m} master(s), {hosts} host(s) done", flush=True)
        for sh in hot_shards if m > 1 else hot_shards[:1]:  # the hot function: many tiny chunks of sampleadd
            with pool(max(counts), m, args, why, sh) as (url, _, _), gomap.Client(url) as client:
                [w, *_] = client.workers("sampleadd")
                gomap.map("sampleadd", pairs[:10_000], client=client, progress=False)  # warm up
                t = best(
                    args.repeat,
                    lambda c=client: gomap.map(
                        "sampleadd", hot_pairs, chunksize=args.hot_chunksize, client=c, progress=False
                    ),
                    want_hot,
                )
                n = len(hot_pairs)
                hot.append({"masters": m, "hosts": max(counts), "items": n, "chunksize": args.hot_chunksize,
                            "chunks": -(-n // args.hot_chunksize), "items_per_s": n / t, "seconds": t,
                            "shards": w.shards})  # fmt: skip
    notes = [
        f"All hosts share this machine's {cores} cores: more hosts cannot mean more CPU.",
        f"Each host runs one gomap-worker with -concurrency {args.concurrency} and GOMAXPROCS = {cores} (the default).",
        "Redis: 1 master is one plain redis-server; 3 masters a Redis Cluster, all on this machine (io-threads off).",
        "shards: how many shards of the queue the workers served (docs/protocol.md, 'Sharded queues').",
    ]
    if rows and "relay" in rows[0]["how"]:
        notes.append("The link delay is a relay process per link (the kernel has no sch_netem): it uses CPU too.")
    print()
    links = f"loopback, not {args.rtt_ms:g} ms links ({why})" if why else f"{args.rtt_ms:g} ms RTT per link"
    print(f"items/s over worker hosts, {links}; best of {args.repeat}, every result checked")
    print(f"  W1: sampleadd over {args.items} pairs;  CPU: countprimes({args.cpu_base} + i), {args.cpu_items} inputs")
    print(
        f"  {'masters':>7}  {'hosts':>5}  {'link RTT measured (ms)':<24}  {'W1 items/s':>12}  {'CPU items/s':>12}  how"
    )
    for r in rows:
        rtt = ", ".join(f"{x:.2f}" for x in r["rtt_ms"]) or "-"
        print(
            f"  {r['masters']:>7}  {r['hosts']:>5}  {rtt:<24}  {r['w1_items_per_s']:>12,.0f}"
            f"  {r['cpu_items_per_s']:>12,.1f}  {r['how']}"
        )
    print()
    print(f"hot function, Redis bound: sampleadd over {args.hot_items} pairs in chunks of {args.hot_chunksize}")
    print(f"  {'masters':>7}  {'hosts':>5}  {'chunks':>7}  {'items/s':>12}  {'chunks/s':>10}  shards")
    for h in hot:
        print(
            f"  {h['masters']:>7}  {h['hosts']:>5}  {h['chunks']:>7}  {h['items_per_s']:>12,.0f}"
            f"  {h['chunks'] / h['seconds']:>10,.0f}  {h['shards']}"
        )
    for n in notes:
        print(f"  note: {n}")
    out = {
        "machine": {"cores": cores, "platform": platform.platform(), "python": platform.python_version()},
        "args": vars(args),
        "loopback_because": why,
        "rows": rows,
        "hot": hot,
        "notes": notes,
    }
    Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
