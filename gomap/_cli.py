"""The ``gomap`` command (also ``python -m gomap``)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence

from . import _binary
from ._client import Client, redact, resolve_url
from ._exceptions import ConfigError, GomapError
from ._local import LocalCluster
from ._map import map as gomap_map


def _demo(args: argparse.Namespace) -> int:
    n = args.items
    cluster = LocalCluster(workers=args.workers).start() if args.url is None else None
    try:
        with Client(args.url or cluster.url) as client:  # type: ignore[union-attr]
            pairs = [(i, 2 * i) for i in range(n)]
            t0 = time.perf_counter()
            sums = gomap_map("sampleadd", pairs, client=client, progress=True)
            took = time.perf_counter() - t0
    finally:
        if cluster is not None:
            cluster.close()
    print(f"sampleadd over {n:,} pairs: {took:.3f}s, {n / took:,.0f} items/s; first results {sums[:5]}")
    wrong = sum(1 for i, s in enumerate(sums) if s != 3 * i)
    if wrong:
        print(f"{wrong} results are wrong", file=sys.stderr)
        return 1
    return 0


def _client(args: argparse.Namespace) -> Client:
    url = args.url or resolve_url(os.environ)
    if url is None:
        raise ConfigError("no Redis to talk to: pass --url or set GOMAP_REDIS_URL (or REDIS_URL)")
    return Client(url, namespace=args.namespace)


def _worker(rest: Sequence[str]) -> int:
    binary = _binary.worker_binary()
    os.execv(binary, [binary, *rest])
    return 1  # pragma: no cover - execv does not return


def _enqueue(args: argparse.Namespace) -> int:
    values = []
    for a in args.args:
        try:
            values.append(json.loads(a))
        except ValueError:
            values.append(a)
    with _client(args) as client:
        client.enqueue(args.class_, *values, queue=args.queue)
        print(f"enqueued {args.class_}{tuple(values)} on queue {args.queue or args.class_!r} at {redact(client.url)}")
    return 0


def _status(args: argparse.Namespace) -> int:
    with _client(args) as client:
        r, k = client.redis, client.keys
        print(f"Redis {redact(client.url)}, namespace {client.namespace!r}")
        workers = client.workers()
        print(f"{len(workers)} live worker process{'es' if len(workers) != 1 else ''}")
        for w in workers:
            print(f"  {w.id}: {w.concurrency} slots, queues {', '.join(w.queues)}")
        for q in sorted(x.decode() for x in r.smembers(k.queues())):
            print(f"  queue {q}: {client.queue_length(q)} waiting")
        print(f"processed {int(r.get(k.stat('processed')) or 0)}, failed {int(r.get(k.stat('failed')) or 0)}")
    return 0


def _build(args: argparse.Namespace) -> int:
    print(_binary.worker_binary())
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gomap", description="Go workers tasked from Python over Resque on Redis.")
    sub = p.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="map sampleadd over a million pairs on the embedded default")
    demo.add_argument("--items", type=int, default=1_000_000, help="how many pairs (default 1,000,000)")
    demo.add_argument("--workers", type=int, default=None, help="worker cores (default: all)")
    demo.add_argument("--url", default=None, help="use this Redis (with workers running) instead")
    sub.add_parser(
        "worker",
        help="run Go workers; every argument passes to gomap-worker (goworker's flags, see -help)",
        add_help=False,
    )
    enq = sub.add_parser("enqueue", help="push one plain Resque job")
    enq.add_argument("class_", metavar="CLASS", help="the function (Resque class) to run")
    enq.add_argument("args", nargs="*", help="its arguments, each read as JSON (else taken as a string)")
    enq.add_argument("--queue", default=None, help="the queue (default: the class)")
    status = sub.add_parser("status", help="live workers, queues and counters")
    for q in (enq, status):
        q.add_argument("--url", default=None, help="Redis URL (default: $GOMAP_REDIS_URL, then $REDIS_URL)")
        q.add_argument("--namespace", default=None, help="key prefix (default: goworker:)")
    sub.add_parser("build", help="build (or find) the gomap-worker binary and print its path")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["worker"]:
        return _worker(argv[1:])
    args = _parser().parse_args(argv)
    commands = {"demo": _demo, "enqueue": _enqueue, "status": _status, "build": _build}
    try:
        return commands[args.command](args)
    except GomapError as e:
        print(f"gomap: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
