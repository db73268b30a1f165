"""The ``gomap`` command (also ``python -m gomap``)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from . import _binary, _compile
from ._client import Client, redact, resolve_url
from ._exceptions import ConfigError, GomapError
from ._local import LocalCluster
from ._map import map as gomap_map


def _demo(args: argparse.Namespace) -> int:
    n = args.items
    cluster = LocalCluster(cores=args.cores).start() if args.url is None else None
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
    return Client(
        url,
        namespace=args.namespace,
        ssl_ca_certs=args.tls_cert,
        ssl_certfile=args.tls_client_cert,
        ssl_keyfile=args.tls_client_key,
        ssl_cert_reqs="none" if args.insecure_tls else None,
    )


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
    if not args.functions:
        if args.output or args.goos or args.goarch:
            raise ConfigError("-o, --goos and --goarch go with --functions PATH")
        print(_binary.worker_binary())
        return 0
    built = _compile.build(args.functions, goos=args.goos, goarch=args.goarch)
    target = Path(args.output) if args.output else built.binary
    if args.output:
        shutil.copyfile(built.binary, target)
        target.chmod(0o755)
    for f in built.functions:
        print(f"  {f.signature}", file=sys.stderr)
    print(target)
    return 0


def _functions(args: argparse.Namespace) -> int:
    with _client(args) as client:
        listed = client.functions()
        print(json.dumps([dataclasses.asdict(f) for f in listed], indent=2) if args.json else repr(listed))
    return 0


def types_text() -> str | None:
    """docs/types.md: shipped in the package as gomap/types.md, or the source tree's in an
    editable install; None when neither is there."""
    pkg = Path(__file__).resolve().parent
    for path in (pkg / "types.md", pkg.parent / "docs" / "types.md"):
        if path.is_file():
            return path.read_text(encoding="utf-8")
    return None


def _types(args: argparse.Namespace) -> int:
    text = types_text()
    if text is None:
        print("gomap: types.md is missing from this installation; reinstall gomap", file=sys.stderr)
        return 1
    sys.stdout.write(text)
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gomap", description="Go workers tasked from Python over Resque on Redis.")
    sub = p.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="map sampleadd over a million pairs on the embedded default")
    demo.add_argument("--items", type=int, default=1_000_000, help="how many pairs (default 1,000,000)")
    demo.add_argument(
        "--cores", "--workers", dest="cores", type=int, default=None, help="cores of the Go worker (default: all)"
    )
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
    build = sub.add_parser(
        "build",
        help="print the gomap-worker binary's path, building it if needed; with --functions, build a worker "
        "with your own Go functions (a static binary to copy to any machine of its OS and architecture)",
    )
    build.add_argument(
        "--functions",
        action="append",
        metavar="PATH",
        help="a .go file or package directory whose exported functions the worker registers (repeatable)",
    )
    build.add_argument("-o", "--output", default=None, help="write the binary here (default: print its cache path)")
    build.add_argument("--goos", default=None, help="target operating system (default: this one), e.g. linux")
    build.add_argument("--goarch", default=None, help="target architecture (default: this one), e.g. arm64")
    sub.add_parser("types", help="what each Python, numpy and pandas value becomes in a Go function (docs/types.md)")
    fns = sub.add_parser("functions", help="the functions the live workers offer, with their Go signatures")
    fns.add_argument("--json", action="store_true", help="print JSON")
    for q in (enq, status, fns):
        q.add_argument("--url", default=None, help="Redis URL (default: $GOMAP_REDIS_URL, then $REDIS_URL)")
        q.add_argument("--namespace", default=None, help="key prefix (default: goworker:)")
        # The names of gomap-worker's and gomap-enqueue's flags.
        q.add_argument(
            "--tls-cert", default=None, metavar="PATH", help="PEM file of CA certificates to trust (rediss://)"
        )
        q.add_argument(
            "--tls-client-cert",
            default=None,
            metavar="PATH",
            help="PEM file of a client certificate to present, with --tls-client-key (rediss://, tls-auth-clients)",
        )
        q.add_argument("--tls-client-key", default=None, metavar="PATH", help="PEM file of its key")
        q.add_argument("--insecure-tls", action="store_true", help="skip verification of the server's certificate")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["worker"]:
        return _worker(argv[1:])
    args = _parser().parse_args(argv)
    commands = {
        "demo": _demo,
        "enqueue": _enqueue,
        "status": _status,
        "build": _build,
        "functions": _functions,
        "types": _types,
    }
    try:
        return commands[args.command](args)
    except GomapError as e:
        print(f"gomap: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
