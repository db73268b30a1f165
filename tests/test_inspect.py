"""The inspector (gomap._inspect), gomap.status() and the CLI commands built on it, against a real
redis-server and the real worker binary."""

from __future__ import annotations

import json
import re
import select
import signal
import subprocess
import sys
from datetime import datetime, timezone

import pytest

import gomap
from gomap._inspect import FailedFilter, Inspector

from .conftest import stop_process, wait_until
from .test_local import no_redis_env

RESQUE_TIME = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d UTC$")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gomap", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=no_redis_env(),
    )


def fail_jobs(client: gomap.Client, inspector: Inspector, n: int = 1) -> None:
    before = inspector.failed_count()
    for i in range(n):
        client.enqueue("samplediv", i + 1, 0)
    wait_until(lambda: inspector.failed_count() == before + n, timeout=15, what=f"{n} samplediv jobs failed")


def test_failed_jobs_listed_shown_retried_removed_cleared(fresh_redis, start_worker):
    start_worker(fresh_redis.url)
    with gomap.Client(fresh_redis.url) as client:
        inspector = Inspector(client)
        fail_jobs(client, inspector, 2)
        entries = inspector.failed()
        assert [(e.index, e.class_, e.queue) for e in entries] == [
            (0, "samplediv", "samplediv"),
            (1, "samplediv", "samplediv"),
        ]
        assert sorted(e.args for e in entries) == [[1, 0], [2, 0]]  # the slots run them in either order
        first, second = entries[0].args, entries[1].args
        assert entries[0].error and entries[0].exception and entries[0].worker and entries[0].retried_at == ""
        assert RESQUE_TIME.match(entries[0].failed_at)

        out = cli("failed", "ls", "--url", fresh_redis.url)
        assert out.returncode == 0 and "2 failed jobs; showing 2" in out.stdout, out
        assert f"0: {entries[0].failed_at} samplediv samplediv({first[0]}, 0): " in out.stdout, out
        out = cli("failed", "show", "1", "--url", fresh_redis.url)
        assert out.returncode == 0 and json.loads(out.stdout)["args"] == second, out

        # Retry one: back on its queue, retried_at set in Resque's format; it runs and fails again.
        out = cli("failed", "retry", "0", "--url", fresh_redis.url)
        assert out.returncode == 0 and "retried failed job 0" in out.stdout, out
        retried = inspector.failed_one(0)
        assert RESQUE_TIME.match(retried.retried_at), retried
        when = datetime.strptime(retried.retried_at, "%Y/%m/%d %H:%M:%S UTC").replace(tzinfo=timezone.utc)
        assert abs(when.timestamp() - datetime.now(timezone.utc).timestamp()) < 60
        wait_until(lambda: inspector.failed_count() == 3, timeout=15, what="the retried job failed again")
        assert inspector.failed_one(2).args == first

        out = cli("failed", "rm", "1", "--url", fresh_redis.url)
        assert out.returncode == 0, out
        assert [e.args for e in inspector.failed()] == [first, first]

        out = cli("failed", "clear", "--url", fresh_redis.url)
        assert out.returncode == 0 and "cleared 2 failed jobs" in out.stdout, out
        assert inspector.failed_count() == 0 and fresh_redis.redis.exists("goworker:failed") == 0


def test_retry_on_a_queue_no_worker_takes_and_filters(fresh_redis, start_worker):
    start_worker(fresh_redis.url)
    r = fresh_redis.redis
    with gomap.Client(fresh_redis.url) as client:
        inspector = Inspector(client)
        fail_jobs(client, inspector, 3)
        r.rpush("goworker:failed", json.dumps({
            "failed_at": "2026/11/28 06:56:13 UTC", "payload": {"class": "Archive", "args": ["x"]},
            "exception": "IOError", "error": "disk full", "backtrace": ["a.rb:1"], "worker": "ruby:1:files",
            "queue": "files",
        }))  # fmt: skip
        assert [e.class_ for e in inspector.failed(where=FailedFilter(exception="IOError"))] == ["Archive"]
        assert [e.index for e in inspector.failed(where=FailedFilter(grep="disk"))] == [3]
        assert len(inspector.failed(where=FailedFilter(class_="samplediv"))) == 3
        assert inspector.failed(where=FailedFilter(queue="nope")) == []
        assert [e.index for e in inspector.failed(offset=1, limit=2)] == [1, 2]

        out = cli("failed", "ls", "--queue", "files", "--json", "--url", fresh_redis.url)
        assert [e["class_"] for e in json.loads(out.stdout)] == ["Archive"], out
        out = cli("failed", "retry", "--url", fresh_redis.url)
        assert out.returncode == 1 and "an index, filters, or --all" in out.stderr, out

        # No worker takes "files": the retried job waits there, byte for byte Resque's payload.
        out = cli("failed", "retry", "--exception", "IOError", "--url", fresh_redis.url)
        assert out.returncode == 0 and "retried 1 failed job\n" in out.stdout, out
        assert r.lrange("goworker:queue:files", 0, -1) == [b'{"class":"Archive","args":["x"]}']
        assert r.sismember("goworker:queues", "files")
        assert inspector.failed_one(3).retried_at and not inspector.failed_one(0).retried_at

        assert inspector.retry_where(FailedFilter()) == 4  # all
        assert r.llen("goworker:queue:files") == 2
        wait_until(lambda: inspector.failed_count() == 7, timeout=15, what="the 3 retried samplediv failed again")


def test_a_foreign_resque_worker_shows_in_workers_and_status(fresh_redis, start_worker):
    w = start_worker(fresh_redis.url, "-prune-after", "-1s")  # the stale one stays, to be shown
    r = fresh_redis.redis
    foreign = "rubyhost:4242:files,mail"
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    r.sadd("goworker:workers", foreign, "oldhost:7:mail")
    r.set(f"goworker:worker:{foreign}", json.dumps({
        "queue": "files", "run_at": "2026-11-28T06:56:08Z", "payload": {"class": "Archive", "args": [1]},
    }))  # fmt: skip
    r.hset("goworker:workers:heartbeat", mapping={foreign: now, "oldhost:7:mail": "2020-01-01T00:00:00+00:00"})
    with gomap.Client(fresh_redis.url) as client:
        inspector = Inspector(client)
        slots = {s.id: s for s in inspector.workers()}
        ruby = slots[foreign]
        assert (ruby.host, ruby.pid, ruby.queues, ruby.gomap) == ("rubyhost", "4242", ("files", "mail"), False)
        assert ruby.job and ruby.job["payload"]["class"] == "Archive"
        assert ruby.heartbeat_age is not None and ruby.heartbeat_age < 60 and not ruby.stale
        assert slots["oldhost:7:mail"].stale
        ours = [s for s in slots.values() if s.gomap]
        assert len(ours) == 4 and all(s.host == "pytest" for s in ours)  # the worker's 4 slots
        assert [p.alive for p in inspector.processes()] == [True] and inspector.processes()[0].id == w.id

        st = gomap.status(client)
        assert "1 live worker process" in st.text() and w.id in st.text()
        assert f"{foreign}: queues files, mail, working on Archive" in st.text()
        assert "1 dead Resque worker" in st.text()
        assert "rubyhost:4242:files,mail" in st._repr_html_()

    out = cli("workers", "--url", fresh_redis.url)
    assert out.returncode == 0 and f"worker {foreign}" in out.stdout and "(not gomap)" in out.stdout, out
    out = cli("status", "--json", "--url", fresh_redis.url)
    assert out.returncode == 0, out
    got = json.loads(out.stdout)
    assert foreign in [s["id"] for s in got["slots"]] and got["processes"][0]["alive"] is True


def test_a_dead_worker_process_shows_as_dead(fresh_redis, start_worker):
    """A worker process killed: its alive key expires (dead_after 1 s) and, with no other worker
    to reap it, its record stays; status shows it dead."""
    w = start_worker(fresh_redis.url)
    with gomap.Client(fresh_redis.url) as client:
        inspector = Inspector(client)
        assert [p.alive for p in inspector.processes()] == [True]
        w.stop(signal.SIGKILL)
        wait_until(lambda: not inspector.processes()[0].alive, timeout=10, what="its alive key expired")
        st = inspector.status()
        assert [p.id for p in st.dead] == [w.id]
        assert "0 live worker processes" in st.text() and "1 dead worker process" in st.text()


def test_running_batches_listed_and_cancelled(fresh_redis, start_worker):
    """A batch on a queue no worker takes (its chunks wait there): listed, then cancelled by id."""
    start_worker(fresh_redis.url)
    r = fresh_redis.redis
    with gomap.Client(fresh_redis.url) as client:
        batch = gomap.submit("samplesleep", [30.0] * 4, chunksize=1, client=client, queue="parked", wait_for_workers=0)
        inspector = Inspector(client)
        wait_until(lambda: inspector.batches(), what="the batch shows")
        assert [(b.id, b.function, b.items) for b in inspector.batches()] == [(batch.id, "samplesleep", 4)]
        out = cli("batches", "--url", fresh_redis.url)
        assert out.returncode == 0 and f"{batch.id}: samplesleep, 4 items" in out.stdout, out
        assert r.llen("goworker:queue:parked") == 4
        out = cli("status", "--batches", "--url", fresh_redis.url)
        assert out.returncode == 0, out
        assert f"batch {batch.id}: samplesleep, 0/4 items done, 4 chunks submitted" in out.stdout
        assert batch.id in gomap.status(client)._repr_html_()
        assert batch.id not in cli("status", "--url", fresh_redis.url).stdout  # SCAN only when asked
        out = cli("batches", "cancel", batch.id, "--url", fresh_redis.url)
        assert out.returncode == 0 and "4 queued chunks removed" in out.stdout, out
        assert inspector.batches() == [] and r.llen("goworker:queue:parked") == 0
        assert not r.keys("goworker:gomap:{*")
        out = cli("batches", "cancel", batch.id, "--url", fresh_redis.url)
        assert out.returncode == 1 and "no batch" in out.stderr


def test_queues_and_status_commands(fresh_redis):
    r = fresh_redis.redis
    r.sadd("goworker:queues", "a", "b")
    r.rpush("goworker:queue:a", "x", "y")
    r.set("goworker:stat:processed", 7)
    r.set("goworker:stat:failed", 2)
    r.set("goworker:gomap:stat:requeued", 3)  # the reaper's counters (worker/operations_test.go writes them)
    r.set("goworker:gomap:stat:pruned", 1)
    out = cli("queues", "--url", fresh_redis.url)
    assert out.returncode == 0 and out.stdout.splitlines() == ["a: 2 waiting", "b: 0 waiting"], out
    out = cli("status", "--url", fresh_redis.url)
    assert out.returncode == 0 and "processed 7, failed 2, requeued 3, pruned 1" in out.stdout, out
    assert "queue a: 2 waiting (no live worker serves it)" in out.stdout, out
    assert "queue b: 0 waiting\n" in out.stdout, out  # empty: nothing to say


def test_batch_progress_counts_the_items_done(fresh_redis, start_worker):
    """Workers add each chunk's items to its batch's meta: status shows done/items of a batch that
    nobody collects yet, failed items too."""
    start_worker(fresh_redis.url)
    with gomap.Client(fresh_redis.url) as client:
        batch = gomap.submit("samplediv", [(4, 2), (9, 3), (1, 0)], chunksize=1, client=client)
        inspector = Inspector(client)
        wait_until(
            lambda: [(b.done, b.failed) for b in inspector.batches()] == [(3, 1)], timeout=15, what="3 items done"
        )
        assert f"batch {batch.id}: samplediv, 3/3 items done, 1 failed" in inspector.status().text()
        inspector.cancel_batch(batch.id)


def test_pause_and_resume_a_queue(fresh_redis, start_worker):
    """A paused queue keeps its jobs while the worker serves its other queues; resumed, they run."""
    w = start_worker(fresh_redis.url)
    r = fresh_redis.redis
    out = cli("queues", "pause", "samplediv", "--url", fresh_redis.url)
    assert out.returncode == 0, out
    assert "queue samplediv paused: 1 of 1 worker processes serving it stopped taking jobs from it" in out.stdout
    with gomap.Client(fresh_redis.url) as client:
        inspector = Inspector(client)
        assert [p.paused for p in inspector.processes() if p.id == w.id] == [("samplediv",)]
        client.enqueue("samplediv", 1, 0)  # would fail at once if it ran
        assert gomap.map("sampleadd", [(1, 2)], client=client, progress=False) == [3]  # the worker is at work
        assert r.llen("goworker:queue:samplediv") == 1 and inspector.failed_count() == 0
        assert "samplediv: 1 waiting (paused)" in cli("queues", "--url", fresh_redis.url).stdout
        assert "queue samplediv: 1 waiting (paused)" in inspector.status().text()
        with pytest.warns(UserWarning, match="queue 'samplediv' is paused"):
            batch = gomap.submit("samplediv", [(4, 2)], client=client)
        done = inspector.resume("samplediv", wait=10)
        assert (done.paused, done.heard, done.serving) == (False, 1, 1), done
        wait_until(lambda: inspector.failed_count() == 1, timeout=10, what="the job ran after the resume")
        assert inspector.paused() == []
        assert batch.result(timeout=10) == [2.0]
    out = cli("queues", "pause", "--url", fresh_redis.url)
    assert out.returncode == 1 and "needs a queue name" in out.stderr, out


def test_dead_resque_worker_is_pruned_and_counted(fresh_redis, start_worker):
    """A Ruby worker that died mid-job (heartbeat 10 minutes old): the reaper prunes it as Resque
    does, fails its job as Resque::PruneDeadWorkerDirtyExit, and status counts it."""
    r = fresh_redis.redis
    dead = "rubyhost:99:files"
    r.sadd("goworker:workers", dead)
    r.set(f"goworker:worker:{dead}", json.dumps({
        "queue": "files", "run_at": "2026-11-28T06:56:08Z", "payload": {"class": "Archive", "args": [3]},
    }))  # fmt: skip
    r.hset("goworker:workers:heartbeat", dead, "2020-01-01T00:00:00+00:00")
    start_worker(fresh_redis.url)
    with gomap.Client(fresh_redis.url) as client:
        inspector = Inspector(client)
        wait_until(lambda: inspector.counters()[1] == 1, timeout=10, what="the dead worker was pruned")
        assert dead not in [s.id for s in inspector.workers()]
        assert "pruned 1" in inspector.status().text()
        [entry] = inspector.failed()
        assert (entry.exception, entry.class_, entry.args, entry.worker, entry.queue) == (
            "Resque::PruneDeadWorkerDirtyExit", "Archive", [3], dead, "files",
        )  # fmt: skip


def test_without_a_url_it_says_how_to_point_it_at_a_pool():
    for args in (["status"], ["failed", "ls"], ["queues"], ["workers"], ["batches"], ["batches", "cancel", "x"]):
        out = cli(*args)
        assert out.returncode == 2, (args, out)
        assert "nothing to inspect" in out.stderr and "--url" in out.stderr and "GOMAP_REDIS_URL" in out.stderr


def test_status_watch_prints_again_until_stopped(fresh_redis):
    proc = subprocess.Popen(
        [sys.executable, "-m", "gomap", "status", "--watch", "0.05", "--json", "--url", fresh_redis.url],
        stdout=subprocess.PIPE,
        env=no_redis_env(),
    )
    try:
        assert proc.stdout is not None
        snapshots: list[dict] = []
        fresh_redis.redis.set("goworker:stat:processed", 1)

        def read_one() -> bool:
            if select.select([proc.stdout], [], [], 0.05)[0]:
                snapshots.append(json.loads(proc.stdout.readline()))  # type: ignore[union-attr]
            return bool(snapshots)

        wait_until(read_one, timeout=30, what="status printed once")
        assert snapshots[0]["processed"] == 1
        fresh_redis.redis.set("goworker:stat:processed", 5)
        wait_until(lambda: read_one() and snapshots[-1]["processed"] == 5, timeout=30, what="it printed again")
        assert proc.poll() is None  # it keeps watching until stopped
    finally:
        stop_process(proc)


def test_status_of_the_embedded_default_from_python():
    """No URL anywhere: gomap.status() inspects the local cluster gomap starts, with its worker process."""
    code = (
        "import gomap\n"
        "s = gomap.status()\n"
        "c = gomap.default_client()\n"
        "assert c.local is not None\n"
        "assert [(p.pid, p.alive) for p in s.processes] == [(c.local.pid, True)], s\n"
        "assert '<table>' in s._repr_html_() and str(c.local.pid) in s._repr_html_()\n"
        "print('ok', s.processes[0].slots)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False, env=no_redis_env()
    )
    assert out.returncode == 0 and out.stdout.startswith("ok "), out.stderr
