"""`gomap dashboard` (gomap._dashboard): its routes through Starlette's TestClient, its CLI, its
/metrics, and its page in a real headless Chromium, against a real redis-server and the real worker.

The browser test also takes the dashboard screenshot the README shows (GOMAP_UPDATE_SCREENSHOTS=1
writes docs/img/dashboard.png)."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

import gomap
from gomap._dashboard import Dashboard
from gomap._inspect import Inspector

from .conftest import ROOT, stop_process, wait_until
from .test_inspect import cli
from .test_local import no_redis_env

pytest.importorskip("starlette", reason='the dashboard extra is not installed: pip install -e ".[dev]"')

from prometheus_client.parser import text_string_to_metric_families

with warnings.catch_warnings():  # Starlette 1.x would rather have httpx2, which the TestClient also works without
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient

TOKEN = "test-token-0123456789abcdef"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
SCREENSHOT = ROOT / "docs" / "img" / "dashboard.png"
FOREIGN = "rubyhost:4242:files,mail"
TOKEN_MSG = "token required: open the URL gomap dashboard printed"
PARKED_FAILURE = {
    "failed_at": "2026/11/28 06:56:13 UTC",
    "payload": {"class": "Archive", "args": ["x"]},
    "exception": "IOError",
    "error": "disk full",
    "backtrace": ["a.rb:1"],
    "worker": "ruby:1:files",
    "queue": "files",  # no worker takes it: a retry leaves the job there
}
ACTIONS = [
    "/api/failed/0/retry",
    "/api/failed/0/remove",
    "/api/failed/retry",
    "/api/failed/clear",
    "/api/batches/nope/cancel",
]


@contextlib.contextmanager
def dashboard(url: str, token: str | None = TOKEN, timeout: float = 5.0, **kwargs: Any) -> Iterator[TestClient]:
    with gomap.Client(url) as client:
        app = Dashboard(Inspector(client, timeout=timeout), token=token, **kwargs).app()
        with TestClient(app, base_url="http://127.0.0.1:8790") as http:
            yield http


def redis_state(r: Any) -> tuple[Any, ...]:
    """What the dashboard's actions could change: the failed list, the queues, the batch keys."""
    return (
        r.lrange("goworker:failed", 0, -1),
        sorted(r.smembers("goworker:queues")),
        r.lrange("goworker:queue:files", 0, -1),
        sorted(r.keys("goworker:gomap:{*")),
    )


def metrics(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def write_foreign_workers(r: Any) -> None:
    """A Ruby Resque worker working on a job, with a fresh heartbeat, and one long dead."""
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    r.sadd("goworker:workers", FOREIGN, "oldhost:7:mail")
    r.set(f"goworker:worker:{FOREIGN}", json.dumps({
        "queue": "files", "run_at": "2026-11-28T06:56:08Z", "payload": {"class": "Archive", "args": [1]},
    }))  # fmt: skip
    r.hset("goworker:workers:heartbeat", mapping={FOREIGN: now, "oldhost:7:mail": "2020-01-01T00:00:00+00:00"})


def test_every_route_needs_the_token_and_a_refused_action_changes_nothing(fresh_redis):
    r = fresh_redis.redis
    r.rpush("goworker:failed", json.dumps(PARKED_FAILURE))
    before = redis_state(r)
    with dashboard(fresh_redis.url) as http:
        for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": f"Basic {TOKEN}"}):
            assert http.get("/", headers=headers).status_code == 401
            for path in ("/api/status", "/api/failed", "/metrics"):
                got = http.get(path, headers=headers)
                assert got.status_code == 401 and TOKEN_MSG in got.json()["error"], (path, got.text)
            for path in ACTIONS:
                got = http.post(path, headers=headers, json={})
                assert got.status_code == 401 and TOKEN_MSG in got.json()["error"], (path, got.text)
        assert http.get("/?token=wrong").status_code == 401
        # The API takes the token in its header only (a URL ends up in logs and histories).
        assert http.get(f"/api/status?token={TOKEN}").status_code == 401
        assert http.post(f"/api/failed/0/retry?token={TOKEN}", json={}).status_code == 401
        assert redis_state(r) == before

        page = http.get(f"/?token={TOKEN}")
        assert page.status_code == 200 and "<title>gomap dashboard</title>" in page.text
        assert "nonce-" in page.headers["content-security-policy"] and page.headers["x-frame-options"] == "DENY"
        assert "access-control-allow-origin" not in page.headers
        assert http.get(f"/metrics?token={TOKEN}").status_code == 200
        got = http.get("/api/status", headers=BEARER).json()
        assert got["failed_count"] == 1 and got["failed_jobs"][0]["class_"] == "Archive"
        # With the token, the same action does what it says.
        assert http.post("/api/failed/0/retry", headers=BEARER, json={}).json()["retried"] == 1
        assert r.lrange("goworker:queue:files", 0, -1) == [b'{"class":"Archive","args":["x"]}']


def test_actions_need_a_json_body(fresh_redis):
    r = fresh_redis.redis
    r.rpush("goworker:failed", json.dumps(PARKED_FAILURE))
    before = redis_state(r)
    with dashboard(fresh_redis.url) as http:
        for path in ACTIONS:
            for kwargs in (
                {"data": {"a": "b"}},  # a form: what a page of another origin can post without a preflight
                {"content": b"{}", "headers": {"Content-Type": "text/plain"}},
                {"content": b""},
            ):
                headers = {**BEARER, **kwargs.pop("headers", {})}
                got = http.post(path, headers=headers, **kwargs)
                assert got.status_code == 415 and "application/json" in got.json()["error"], (path, got.text)
        assert redis_state(r) == before
        got = http.post("/api/failed/retry", headers=BEARER, json={"grep": "disk", "queue": "files"})
        assert got.status_code == 200 and got.json() == {"retried": 1}
        got = http.post("/api/failed/retry", headers=BEARER, json={"colour": "red"})
        assert got.status_code == 400 and "unknown filter fields" in got.json()["error"]
        got = http.post("/api/failed/7/remove", headers=BEARER, json={})
        assert got.status_code == 404 and "no failed job at index 7" in got.json()["error"]
        assert http.post("/api/failed/clear", headers=BEARER, json={}).json() == {"cleared": 1}
        assert r.llen("goworker:failed") == 0


def test_host_header_must_name_this_server(fresh_redis):
    with dashboard(fresh_redis.url, allow_hosts=["dash.internal"]) as http:
        for host in ("127.0.0.1:8790", "localhost:8790", "[::1]:8790", "dash.internal"):
            assert http.get("/api/status", headers={**BEARER, "Host": host}).status_code == 200, host
        for host in ("evil.example", "evil.example:8790", "127.0.0.1.evil.example"):
            assert http.get("/api/status", headers={**BEARER, "Host": host}).status_code == 400, host
            assert http.post("/api/failed/clear", headers={**BEARER, "Host": host}, json={}).status_code == 400


def test_pause_and_resume_a_queue(fresh_redis):
    r = fresh_redis.redis
    r.sadd("goworker:queues", "mail")
    key = "goworker:gomap:paused:{goworker:queue:mail}"
    with dashboard(fresh_redis.url) as http:
        assert http.post("/api/queues/mail/pause", json={}).status_code == 401 and not r.exists(key)
        got = http.post("/api/queues/mail/pause", headers=BEARER, json={})
        assert got.status_code == 200 and got.json()["paused"] == "mail", got.text
        assert r.exists(key)
        assert [q["paused"] for q in http.get("/api/status", headers=BEARER).json()["queues"]] == [True]
        assert metrics(http.get("/metrics", headers=BEARER).text)[("gomap_queue_paused", (("queue", "mail"),))] == 1
        got = http.post("/api/queues/mail/resume", headers=BEARER, json={})
        assert got.status_code == 200 and got.json()["resumed"] == "mail", got.text
        assert not r.exists(key)


def test_redis_unreachable_is_a_json_error_and_a_metric(fresh_redis):
    url = fresh_redis.url
    with dashboard(url, timeout=1.0) as http:
        fresh_redis.stop()
        got = http.get("/api/status", headers=BEARER)
        assert got.status_code == 503 and "cannot reach Redis" in got.json()["error"], got.text
        got = http.post("/api/failed/clear", headers=BEARER, json={})
        assert got.status_code == 503 and "cannot reach Redis" in got.json()["error"], got.text
        assert metrics(http.get("/metrics", headers=BEARER).text) == {("gomap_scrape_error", ()): 1.0}


def test_metrics_read_the_pool(fresh_redis, start_worker):
    start_worker(fresh_redis.url, "-prune-after", "-1s")  # the stale Resque worker stays, to be counted
    r = fresh_redis.redis
    write_foreign_workers(r)
    r.rpush("goworker:failed", json.dumps(PARKED_FAILURE))
    r.set("goworker:stat:processed", 7)
    r.set("goworker:gomap:stat:requeued", 2)  # the reaper's counters
    r.set("goworker:gomap:stat:pruned", 5)
    with gomap.Client(fresh_redis.url) as client:
        batch = gomap.submit("samplesleep", [30.0] * 3, chunksize=1, client=client, queue="parked", wait_for_workers=0)
        with dashboard(fresh_redis.url) as http:
            wait_until(lambda: Inspector(client).batches(), what="the batch shows")
            got = metrics(http.get("/metrics", headers=BEARER).text)
            cancelled = http.post(f"/api/batches/{batch.id}/cancel", headers=BEARER, json={})
    assert cancelled.json() == {"cancelled": batch.id, "chunks_removed": 3}, cancelled.text
    assert r.llen("goworker:queue:parked") == 0 and not r.keys("goworker:gomap:{*")
    assert got[("gomap_queue_jobs", (("queue", "parked"),))] == 3
    assert got[("gomap_queue_paused", (("queue", "parked"),))] == 0
    assert got[("gomap_worker_processes", (("state", "live"),))] == 1
    assert got[("gomap_worker_processes", (("state", "dead"),))] == 0
    assert got[("gomap_resque_workers", (("kind", "other"), ("state", "live")))] == 1  # the Ruby worker
    assert got[("gomap_resque_workers", (("kind", "other"), ("state", "stale")))] == 1  # the dead one
    assert got[("gomap_resque_workers", (("kind", "gomap"), ("state", "live")))] == 4  # the worker's 4 slots
    assert got[("gomap_jobs_processed_total", ())] == 7
    assert got[("gomap_failed_jobs", ())] == 1
    assert got[("gomap_requeued_total", ())] == 2 and got[("gomap_pruned_total", ())] == 5
    labels = (("batch", batch.id), ("function", "samplesleep"))
    assert got[("gomap_batch_items", labels)] == 3 and got[("gomap_batch_items_done", labels)] == 0
    assert 0 <= got[("gomap_batch_age_seconds", labels)] < 60
    assert got[("gomap_batches_readable", ())] == 1 and got[("gomap_scrape_error", ())] == 0


def test_metrics_without_scan_say_the_batches_are_unreadable(fresh_redis):
    r = fresh_redis.redis
    r.sadd("goworker:queues", "a")
    r.rpush("goworker:queue:a", "x", "y")
    r.execute_command("ACL", "SETUSER", "noscan", "on", ">secret-pw", "~*", "&*", "+@all", "-scan")
    path = fresh_redis.url.removeprefix("unix://")
    assert fresh_redis.url.startswith("unix://"), fresh_redis.url
    with dashboard(f"unix://noscan:secret-pw@{path}") as http:
        got = metrics(http.get("/metrics", headers=BEARER).text)
        status = http.get("/api/status", headers=BEARER).json()
    assert got[("gomap_queue_jobs", (("queue", "a"),))] == 2
    assert got[("gomap_batches_readable", ())] == 0 and got[("gomap_scrape_error", ())] == 0
    assert not any(name.startswith("gomap_batch_") for name, _ in got)
    assert "not read" in status["batches_error"]


def test_cli_refuses_no_token_off_loopback_and_says_what_to_install(fresh_redis):
    out = cli("dashboard", "--url", fresh_redis.url, "--host", "0.0.0.0", "--no-token")
    assert out.returncode == 1 and "--no-token is refused on --host 0.0.0.0" in out.stderr, out
    assert "Traceback" not in out.stderr
    out = cli("dashboard", "--host", "127.0.0.1", "--port", "0")
    assert out.returncode == 2 and "nothing to inspect" in out.stderr, out
    code = (
        "import sys\n"
        "sys.modules['starlette'] = None  # as if the extra were not installed\n"
        "from gomap._cli import main\n"
        f"sys.exit(main(['dashboard', '--url', {fresh_redis.url!r}]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False, env=no_redis_env()
    )
    assert out.returncode == 2 and 'pip install "gomap[dashboard]"' in out.stderr, out
    assert "Traceback" not in out.stderr


ITEMS = 20
PARTLY_DONE = """n => {
  const bar = document.querySelector('#batches tr[data-batch] .bar');
  const m = bar && bar.innerText.match(/^(\\d+)\\/(\\d+) items/);
  return m !== null && Number(m[2]) === n && Number(m[1]) >= 3 && Number(m[1]) < n;
}"""
"""Whether the page shows the batch of n items with some of them done, not all."""


class Served:
    """`gomap dashboard --port 0` as a subprocess: the URL it printed, stopped by its PID."""

    def __init__(self, tmp: Path, *args: str) -> None:
        self.log = tmp / "dashboard.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gomap", "dashboard", "--port", "0", *args],
                stdout=subprocess.PIPE,
                stderr=log,
                env=no_redis_env(),
            )
        self.url = ""
        try:
            wait_until(self._read_url, timeout=30, what="gomap dashboard prints its URL")
        except BaseException:
            self.stop()
            raise

    def _read_url(self) -> bool:
        assert self.proc.stdout is not None
        assert self.proc.poll() is None, f"gomap dashboard exited:\n{self.log.read_text()}"
        if select.select([self.proc.stdout], [], [], 0.05)[0]:
            line = self.proc.stdout.readline().decode()
            if line.startswith("gomap dashboard: "):
                self.url = line.removeprefix("gomap dashboard: ").strip()
        return bool(self.url)

    def stop(self) -> None:
        stop_process(self.proc, signal.SIGTERM)


def test_the_page_in_a_real_browser(fresh_redis, start_worker, tmp_path):
    from ._browser import CHROMIUM, require_browser

    require_browser()
    from playwright.sync_api import sync_playwright

    start_worker(fresh_redis.url, "-prune-after", "-1s")  # the stale Resque worker stays, to be shown
    r = fresh_redis.redis
    write_foreign_workers(r)
    served = Served(tmp_path, "--url", fresh_redis.url)
    assert served.url.startswith("http://127.0.0.1:") and "?token=" in served.url, served.url
    base, token = served.url.split("?token=")
    assert len(token) >= 16
    batch_errors: list[BaseException] = []
    runner: threading.Thread | None = None
    client = gomap.Client(fresh_redis.url)
    try:
        inspector = Inspector(client)
        client.enqueue("samplediv", 1, 0)
        wait_until(lambda: inspector.failed_count() == 1, timeout=15, what="the samplediv job failed")
        with sync_playwright() as p:
            home = {v: str(tmp_path / "browser") for v in ("HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME")}
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, env={**os.environ, **home})
            try:
                page = browser.new_page(viewport={"width": 1360, "height": 1000}, device_scale_factor=2)
                errors: list[str] = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                assert page.goto(served.url, timeout=15_000).status == 200  # type: ignore[union-attr]
                page.wait_for_selector(f'#workers tr[data-worker="{FOREIGN}"]', timeout=15_000)
                foreign = page.locator(f'#workers tr[data-worker="{FOREIGN}"]').inner_text()
                assert "other Resque" in foreign and "Archive on files" in foreign, foreign
                assert "dead" in page.locator('#workers tr[data-worker="oldhost:7:mail"]').inner_text()
                page.wait_for_selector('#queues tr[data-queue="samplediv"]', timeout=15_000)
                row = page.locator('#failed tr[data-failed-index="0"]').inner_text()
                assert "samplediv" in row and "[1,0]" in row, row
                process = page.locator("#processes tbody tr").inner_text()
                assert "pytest" in process and "alive" in process, process
                assert page.locator("#url").inner_text() == fresh_redis.url  # no password to redact here

                # A running batch, in a thread of its own: item i sleeps 0.3 (i + 1) s, so that the
                # bar moves for about 6 s.
                def run() -> None:
                    try:
                        gomap.map("samplesleep", [0.3 * (i + 1) for i in range(ITEMS)], chunksize=1, client=client)
                    except BaseException as e:
                        batch_errors.append(e)

                runner = threading.Thread(target=run, name="batch", daemon=True)
                runner.start()
                page.wait_for_function(PARTLY_DONE, arg=ITEMS, timeout=15_000, polling=50)
                running = page.locator("#batches tr[data-batch]").inner_text()
                assert "samplesleep" in running and f"/{ITEMS} items" in running, running
                page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
                if os.environ.get("GOMAP_UPDATE_SCREENSHOTS") == "1":
                    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=str(SCREENSHOT), full_page=True)

                # Retry from the page: back on its queue with retried_at set; the worker runs it
                # again (and it fails again).
                page.locator('#failed tr[data-failed-index="0"] button.retry').click()
                wait_until(lambda: inspector.failed_one(0).retried_at, timeout=10, what="retried_at is set")
                wait_until(lambda: inspector.failed_count() == 2, timeout=30, what="the retried job ran again")
                assert inspector.failed_one(1).args == [1, 0]
                page.wait_for_selector('#failed tr[data-failed-index="1"]', timeout=15_000)
                assert not errors, errors
                runner.join(timeout=60)
                assert not runner.is_alive() and not batch_errors, batch_errors

                # Without the token: the page says where it is, and its script can change nothing.
                stranger = browser.new_page()
                assert stranger.goto(base, timeout=15_000).status == 401  # type: ignore[union-attr]
                stranger.wait_for_selector(f'#banner:has-text("{TOKEN_MSG}")', timeout=15_000)
                before = redis_state(r)
                statuses = stranger.evaluate(
                    """async (paths) => {
                        const out = [];
                        for (const p of paths) {
                            const r = await fetch(p, {method: 'POST', headers: {'Content-Type': 'application/json'},
                                                      body: '{}'});
                            out.push(r.status);
                        }
                        return out;
                    }""",
                    ["/api/failed/1/retry", "/api/failed/1/remove", "/api/failed/clear"],
                )
                assert statuses == [401, 401, 401]
                assert redis_state(r) == before and inspector.failed_one(1).retried_at == ""
            finally:
                browser.close()
    finally:
        served.stop()
        if runner is not None:
            runner.join(timeout=60)
        client.close()


def test_dashboard_of_the_embedded_default_from_python():
    """No URL anywhere: gomap.dashboard() serves the local cluster's pool from a background thread,
    behind its token, until stopped."""
    code = (
        "import json, urllib.request, urllib.error\n"
        "import gomap\n"
        "d = gomap.dashboard()\n"
        "base, token = d.url.split('?token=')\n"
        "req = urllib.request.Request(base + 'api/status', headers={'Authorization': 'Bearer ' + token})\n"
        "st = json.load(urllib.request.urlopen(req, timeout=10))\n"
        "pid = gomap.default_client().local.pid\n"
        "assert [(p['pid'], p['alive']) for p in st['processes']] == [(pid, True)], st['processes']\n"
        "try:\n"
        "    urllib.request.urlopen(base + 'api/status', timeout=10)\n"
        "    raise SystemExit('served without the token')\n"
        "except urllib.error.HTTPError as e:\n"
        "    assert e.code == 401, e.code\n"
        "assert 'href=' in d._repr_html_() and d.running\n"
        "d.stop()\n"
        "assert not d.running\n"
        "try:\n"
        "    urllib.request.urlopen(req, timeout=2)\n"
        "    raise SystemExit('still serving after stop()')\n"
        "except urllib.error.URLError:\n"
        "    pass\n"
        "print('ok')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False, env=no_redis_env()
    )
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), (out.stdout, out.stderr)
