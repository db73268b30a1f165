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
from ._inspect import Failed, FailedFilter, Inspector, _slot_line, failed_to_json
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


NOTHING_TO_INSPECT = (
    "nothing to inspect: no Redis URL. Point gomap at a pool with --url redis://host:6379/0 or set "
    "GOMAP_REDIS_URL (or REDIS_URL); a notebook's embedded default is inspected from Python with gomap.status() "
    "or gomap.dashboard()"
)


class _NoPool(Exception):
    """No --url and no GOMAP_REDIS_URL / REDIS_URL: exit code 2."""


def _inspector(args: argparse.Namespace) -> Inspector:
    if not (args.url or resolve_url(os.environ)):
        raise _NoPool(NOTHING_TO_INSPECT)
    return Inspector(_client(args))


def _status(args: argparse.Namespace) -> int:
    inspector = _inspector(args)
    with inspector.client:
        while True:
            st = inspector.status(batches=args.batches)
            if args.json:
                print(json.dumps(st.to_json(), default=str), flush=True)
            else:
                print(st.text(), flush=True)
            if not args.watch:
                return 0
            time.sleep(args.watch)  # the refresh interval the user asked for
            if not args.json:
                print()


def _filter(args: argparse.Namespace) -> FailedFilter:
    return FailedFilter(class_=args.class_, queue=args.queue, exception=args.exception, grep=args.grep)


def _failed_line(e: Failed) -> str:
    retried = f", retried {e.retried_at}" if e.retried_at else ""
    args = ", ".join(json.dumps(a) for a in e.args)
    return f"{e.index}: {e.failed_at} {e.queue} {e.class_}({args}): {e.exception}: {e.error}{retried}"


def _jobs(n: int) -> str:
    return f"{n} failed job{'' if n == 1 else 's'}"


def _failed(args: argparse.Namespace) -> int:
    inspector = _inspector(args)
    with inspector.client:
        action = args.action
        if action == "ls":
            entries = inspector.failed(args.offset, args.limit, _filter(args))
            if args.json:
                print(json.dumps(failed_to_json(entries)))
            else:
                print(f"{_jobs(inspector.failed_count())}; showing {len(entries)}")
                for e in entries:
                    print(f"  {_failed_line(e)}")
        elif action == "show":
            e = inspector.failed_one(_index(args))
            print(json.dumps(failed_to_json([e])[0], indent=2))
        elif action == "retry":
            if args.index is not None:
                e = inspector.retry(_index(args))
                print(f"retried failed job {e.index}: {e.class_} on queue {e.queue}")
            else:
                where = _filter(args)
                if where.empty and not args.all:
                    raise ConfigError("say which failed jobs to retry: an index, filters, or --all")
                print(f"retried {_jobs(inspector.retry_where(where))}")
        elif action == "rm":
            e = inspector.remove(_index(args))
            print(f"removed failed job {e.index}: {e.class_} on queue {e.queue}")
        elif action == "clear":
            print(f"cleared {_jobs(inspector.clear())}")
    return 0


def _index(args: argparse.Namespace) -> int:
    if args.index is None:
        raise ConfigError(f"`gomap failed {args.action}` needs the index of a failed job (see `gomap failed ls`)")
    return args.index


def _queues(args: argparse.Namespace) -> int:
    inspector = _inspector(args)
    with inspector.client:
        if args.action in ("pause", "resume"):
            if not args.name:
                raise ConfigError(f"`gomap queues {args.action}` needs a queue name (see `gomap queues`)")
            change = inspector.pause if args.action == "pause" else inspector.resume
            done = change(args.name, wait=args.wait)
            print(json.dumps(dataclasses.asdict(done)) if args.json else done.text())
            return 0
        queues = inspector.queues()
        if args.json:
            print(json.dumps([dataclasses.asdict(q) for q in queues]))
        for q in [] if args.json else queues:
            print(f"{q.name}: {q.length} waiting{' (paused)' if q.paused else ''}")
    return 0


def _workers(args: argparse.Namespace) -> int:
    inspector = _inspector(args)
    with inspector.client:
        processes, slots = inspector.processes(), inspector.workers()
        if args.json:
            print(json.dumps({"processes": [dataclasses.asdict(p) for p in processes],
                              "workers": [dataclasses.asdict(s) for s in slots]}))  # fmt: skip
            return 0
        for p in processes:
            print(f"process {p.id}: {'alive' if p.alive else 'dead'}, {p.slots} slots, {p.cores or '?'} cores, "
                  f"queues {', '.join(p.queues)}")  # fmt: skip
        for s in slots:
            print(f"worker {_slot_line(s)}{'' if s.gomap else ' (not gomap)'}")
    return 0


def _batches(args: argparse.Namespace) -> int:
    inspector = _inspector(args)
    with inspector.client:
        if args.action == "cancel":
            if not args.id:
                raise ConfigError("`gomap batches cancel` needs a batch id (see `gomap batches`)")
            removed = inspector.cancel_batch(args.id)
            print(f"cancelled batch {args.id}: {removed} queued chunks removed")
            return 0
        batches = inspector.batches()
        if args.json:
            print(json.dumps([dataclasses.asdict(b) for b in batches]))
            return 0
        for b in batches:
            print(f"{b.id}: {b.function}, {b.items} items, {b.submitted} chunks submitted, {b.age()}, {b.client}")
        if not batches:
            print("no running batches")
    return 0


def _dashboard(args: argparse.Namespace) -> int:
    from . import _dashboard as dash

    missing = dash.missing_extra()
    if missing:
        print(f"gomap: {missing}", file=sys.stderr)
        return 2
    token = dash.resolve_token(args.token, args.no_token, args.host, dict(os.environ))
    inspector = _inspector(args)
    with inspector.client:
        dash.serve(inspector, host=args.host, port=args.port, token=token, allow_hosts=args.allow_host or ())
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
    status = sub.add_parser("status", help="live and dead workers, queues, batches and counters")
    status.add_argument("--watch", type=float, default=None, metavar="SECONDS", help="print again every SECONDS")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.add_argument(
        "--batches", action="store_true", help="list the running batches too (needs SCAN; see docs/security.md)"
    )
    failed = sub.add_parser("failed", help="failed jobs: ls, show N, retry (N | --all | filters), rm N, clear")
    failed.add_argument("action", choices=["ls", "show", "retry", "rm", "clear"])
    failed.add_argument("index", nargs="?", type=int, default=None, help="a failed job's index (see ls)")
    failed.add_argument("--class", dest="class_", default=None, help="only jobs of this function (class)")
    failed.add_argument("--queue", default=None, help="only jobs of this queue")
    failed.add_argument("--exception", default=None, help="only jobs that failed with this exception")
    failed.add_argument("--grep", default=None, metavar="TEXT", help="only jobs whose error contains TEXT")
    failed.add_argument("--all", action="store_true", help="retry: every failed job")
    failed.add_argument("--offset", type=int, default=0, help="ls: start at this index")
    failed.add_argument("--limit", type=int, default=50, help="ls: at most this many")
    failed.add_argument("--json", action="store_true", help="print JSON")
    queues = sub.add_parser("queues", help="the queues and their lengths; `queues pause|resume NAME`")
    queues.add_argument("action", nargs="?", choices=["ls", "pause", "resume"], default="ls")
    queues.add_argument("name", nargs="?", default=None, help="the queue to pause or resume")
    queues.add_argument(
        "--wait",
        type=float,
        default=15.0,
        metavar="SECONDS",
        help="pause/resume: wait up to SECONDS until every live gomap worker serving the queue took note "
        "(default 15; workers take note at their next heartbeat)",
    )
    queues.add_argument("--json", action="store_true", help="print JSON")
    workers = sub.add_parser("workers", help="gomap worker processes and every Resque worker (Ruby's too)")
    workers.add_argument("--json", action="store_true", help="print JSON")
    batches = sub.add_parser("batches", help="running batches; `batches cancel ID` cancels one")
    batches.add_argument("action", nargs="?", choices=["ls", "cancel"], default="ls")
    batches.add_argument("id", nargs="?", default=None, help="the batch to cancel")
    batches.add_argument("--json", action="store_true", help="print JSON")
    dash = sub.add_parser(
        "dashboard", help="serve a page of the pool (queues, workers, batches, failed jobs) and /metrics"
    )
    dash.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    dash.add_argument("--port", type=int, default=8790, help="port to listen on (default 8790; 0: any free port)")
    dash.add_argument("--token", default=None, help="the token the page and API need (default: $GOMAP_DASHBOARD_TOKEN, "
                      "else a random one, printed in the URL)")  # fmt: skip
    dash.add_argument("--no-token", action="store_true", help="no token (only with a loopback --host)")
    dash.add_argument("--allow-host", action="append", metavar="NAME", help="also answer requests for this host name "
                      "(the name in the URL users open, when --host is not loopback; repeatable)")  # fmt: skip
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
    for q in (enq, status, fns, failed, queues, workers, batches, dash):
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
        "failed": _failed,
        "queues": _queues,
        "workers": _workers,
        "batches": _batches,
        "dashboard": _dashboard,
        "build": _build,
        "functions": _functions,
        "types": _types,
    }
    try:
        return commands[args.command](args)
    except _NoPool as e:
        print(f"gomap: {e}", file=sys.stderr)
        return 2
    except GomapError as e:
        print(f"gomap: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # gomap workers | head
        sys.stderr.close()
        return 141
