"""Figures for docs/reliability.md: what a fault costs a running batch.

Each scenario runs a real batch on a private redis-server and real gomap-workers, injects one fault
and reports what the caller saw and how long it took:

- stall:     redis-server SIGSTOPped for --stall seconds mid-batch; the call rides it out.
- timeout:   the same stall, with timeout= shorter than it; how far past timeout= the call returns.
- lost:      FLUSHALL mid-batch; how long until BatchLost.
- restart:   every worker SIGTERMed, new ones started --gap seconds later; the batch completes.
- kill:      a second worker SIGKILLed --kills times during a batch of --items samplesleep(0.5 ms)
             items; items lost and wrong (both must be 0).

    .venv/bin/python benchmarks/reliability.py [--stall 3] [--gap 6] [--kills 10]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import gomap
from gomap import _binary, _procs

BINARY = _binary.worker_binary()


def worker(url: str, name: str, *args: str) -> _procs.WorkerProcess:
    return _procs.WorkerProcess(
        BINARY,
        [
            "-uri",
            url,
            "-hostname",
            name,
            "-heartbeat",
            "200ms",
            "-dead-after",
            "1s",
            "-shutdown-timeout",
            "2s",
            "-log-level",
            "warn",
            *args,
        ],
    )


def in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        start = time.monotonic()
        try:
            out["value"] = fn()
        except BaseException as e:
            out["error"] = e
        out["seconds"] = time.monotonic() - start

    t = threading.Thread(target=run)
    t.start()
    return t, out


def stall(server: _procs.RedisServer, seconds: float) -> None:
    server.pause()
    try:
        time.sleep(seconds)  # the length of the fault
    finally:
        server.resume()


def processed(server: _procs.RedisServer) -> int:
    return int(server.client().get("goworker:stat:processed") or 0)


def wait_processed(server: _procs.RedisServer, at_least: int, deadline: float = 30.0) -> None:
    end = time.monotonic() + deadline
    while processed(server) < at_least:
        if time.monotonic() > end:
            raise RuntimeError("no progress")
        time.sleep(0.005)


def scenario_stall(seconds: float) -> None:
    with _procs.RedisServer() as server:
        w = worker(server.url, "stall")
        client = gomap.Client(server.url)
        try:
            items = [0.01] * 600
            base_start = time.monotonic()
            gomap.map("samplesleep", items, chunksize=5, client=client, progress=False)
            base = time.monotonic() - base_start
            t, out = in_thread(lambda: gomap.map("samplesleep", items, chunksize=5, client=client, progress=False))
            wait_processed(server, processed(server) + 10)
            stall(server, seconds)
            t.join(120)
            ok = out.get("value") == items
            print(
                f"stall    {seconds:.1f}s SIGSTOP mid-batch: completed={ok} in {out['seconds']:.2f}s "
                f"(no stall: {base:.2f}s; extra {out['seconds'] - base:.2f}s)"
            )
        finally:
            client.close()
            w.stop()


def scenario_timeout(seconds: float, runs: int) -> None:
    overshoots = []
    with _procs.RedisServer() as server:
        w = worker(server.url, "timeout")
        client = gomap.Client(server.url)
        try:
            for _ in range(runs):
                timeout = 1.0
                start = time.monotonic()
                it = gomap.imap("samplesleep", [0.05] * 400, chunksize=2, client=client, timeout=timeout)
                next(it)
                server.pause()
                try:
                    list(it)
                except gomap.Timeout:
                    overshoots.append(time.monotonic() - start - timeout)
                finally:
                    time.sleep(max(0.0, seconds - (time.monotonic() - start)))  # the rest of the fault
                    server.resume()
                end = time.monotonic() + 30
                while server.client().keys("goworker:gomap:{*"):  # the background cancel
                    if time.monotonic() > end:
                        raise RuntimeError("the cancel never reached Redis")
                    time.sleep(0.01)
        finally:
            client.close()
            w.stop()
    print(
        f"timeout  timeout=1s during a {seconds:.1f}s stall, {runs} runs: raised Timeout {len(overshoots)}/{runs}, "
        f"past timeout= by max {max(overshoots):.3f}s, median {statistics.median(overshoots):.3f}s; "
        "keys cleaned once Redis was back"
    )


def scenario_lost(runs: int) -> None:
    seen = []
    with _procs.RedisServer() as server:
        w = worker(server.url, "lost")
        client = gomap.Client(server.url)
        try:
            for _ in range(runs):
                it = gomap.imap("samplesleep", [0.05] * 100, chunksize=1, client=client)
                next(it)
                server.client().flushall()
                start = time.monotonic()
                try:
                    list(it)
                except gomap.BatchLost:
                    seen.append(time.monotonic() - start)
        finally:
            client.close()
            w.stop()
    print(f"lost     FLUSHALL mid-batch, {runs} runs: BatchLost {len(seen)}/{runs}, after max {max(seen):.3f}s")


def scenario_restart(gap: float) -> None:
    with _procs.RedisServer() as server:
        old = [worker(server.url, f"old{i}", "-concurrency", "2") for i in range(2)]
        client = gomap.Client(server.url)
        items = [0.05] * 200
        new: list[_procs.WorkerProcess] = []
        try:
            t, out = in_thread(lambda: gomap.map("samplesleep", items, chunksize=1, client=client, progress=False))
            wait_processed(server, 20)
            for w in old:
                w.stop()
            time.sleep(gap)  # the length of the restart
            new = [worker(server.url, f"new{i}", "-concurrency", "2") for i in range(2)]
            t.join(120)
            print(
                f"restart  all workers SIGTERMed, new ones {gap:.0f}s later: "
                f"completed={out.get('value') == items} error={out.get('error')!r} in {out['seconds']:.2f}s"
            )
        finally:
            client.close()
            for w in new:
                w.stop()


def scenario_kill(kills: int, n: int) -> None:
    """SIGKILL a second worker again and again during a batch of samplesleep(0.5 ms) items, so the
    batch runs long enough for every kill to land mid-batch."""
    with _procs.RedisServer() as server:
        steady = worker(server.url, "steady", "-concurrency", "2")
        client = gomap.Client(server.url)
        items = [0.0005] * n
        done = 0
        try:
            t, out = in_thread(
                lambda: gomap.map("samplesleep", items, chunksize=250, client=client, progress=False, timeout=600)
            )
            for k in range(kills):
                if not t.is_alive():
                    break
                v = worker(server.url, f"victim{k}", "-concurrency", "2")
                wait_processed(server, processed(server) + 4)
                os.kill(v.pid, signal.SIGKILL)
                v.stop()
                done += 1
            t.join(600)
            got = out.get("value") or []
            wrong = sum(1 for v in got if v != 0.0005)
            print(
                f"kill     {done} SIGKILLs of a worker during {n:,} items of samplesleep(0.5 ms): "
                f"error={out.get('error')!r}, items returned {len(got):,}, lost {n - len(got)}, wrong {wrong}, "
                f"in {out['seconds']:.2f}s"
            )
        finally:
            client.close()
            steady.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stall", type=float, default=3.0)
    ap.add_argument("--gap", type=float, default=6.0)
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    scenario_stall(a.stall)
    scenario_timeout(a.stall, a.runs)
    scenario_lost(a.runs)
    scenario_restart(a.gap)
    scenario_kill(a.kills, a.items)


if __name__ == "__main__":
    main()
