"""The progress bar tells the truth (docs/protocol.md, "Progress"), and errors and interrupts end
in short tracebacks. The widget in a real browser: tests/test_browser.py."""

from __future__ import annotations

import io
import itertools
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import traceback
from decimal import Decimal

import pytest
from tqdm import tqdm

import gomap
from gomap import _frontend, _progress

from .conftest import ROOT, wait_until


class Recording(tqdm):
    """A text bar (to nowhere) that records what each redraw showed, and when."""

    def __init__(self, *args, **kwargs):
        self.draws: list[tuple[float, int]] = []
        kwargs["file"] = io.StringIO()
        super().__init__(*args, **kwargs)
        Recording.last = self

    def refresh(self, *args, **kwargs):
        self.draws.append((time.monotonic(), int(self.n)))
        return super().refresh(*args, **kwargs)


def test_the_bar_moves_inside_a_running_chunk(client):
    # One chunk of 8 items that end 0.15 s apart (samplesleep runs them all at once): without the
    # workers' reports the bar would jump from 0 to 8.
    seconds = [0.15 * i for i in range(1, 9)]
    gomap.map("samplesleep", seconds, chunksize=8, client=client, tqdm_class=Recording, progress=True)
    shown = [n for _, n in Recording.last.draws]
    assert shown[-1] == 8
    assert any(0 < n < 8 for n in shown), shown
    assert shown == sorted(shown), "the count never goes back"


def test_bar_redraws_on_a_slow_batch(client):
    # Two items of 1.6 s on two goroutines: nothing completes for 1.6 s, and still the bar (its
    # clock) is redrawn at least once a second.
    t0 = time.monotonic()
    gomap.map("samplesleep", [1.6, 1.6], chunksize=2, client=client, tqdm_class=Recording, progress=True)
    times = [t0] + [t for t, _ in Recording.last.draws]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert max(gaps) <= 1.0, gaps
    assert Recording.last.n == 2  # drawn by close()


def test_a_count_drawn_too_soon_is_drawn_when_the_loop_wakes_again(monkeypatch):
    # tqdm's own update() drops a redraw within mininterval, and with no later update the count
    # stays unseen: the bar asks the collect loop to wake in time and draws it then.
    now = [100.0]
    monkeypatch.setattr(_progress, "_now", lambda: now[0])
    bar = _progress._Bar(Recording(total=10))
    now[0] += 1
    assert bar.advance(3, 0) is None  # long enough since the bar was made: drawn
    now[0] += 0.01
    wake = bar.advance(5, 0)
    assert wake is not None and 0 < wake <= _progress.REDRAW_MIN
    assert Recording.last.draws[-1][1] == 3
    now[0] += wake
    assert bar.advance(5, 0) is None
    assert Recording.last.draws[-1][1] == 5
    now[0] += 0.01
    assert bar.advance(4, 0) is None  # a lower count (a chunk run again) never shows
    assert Recording.last.n == 5


def test_counts_are_exact_rates_scaled_and_failures_in_red(client):
    out = io.StringIO()
    gomap.map("sampleadd", [(i, i) for i in range(20_000)], client=client, progress=True, tqdm_kwargs={"file": out})
    text = out.getvalue()
    assert "20,000/20,000" in text
    assert re.search(r"\d[kM]item/s", text), text[-200:]

    out = io.StringIO()
    got = gomap.map(
        "samplediv", [(1, 1), (1, 0), (2, 1), (1, 0)], errors="return", client=client, progress=True,
        tqdm_kwargs={"file": out},
    )  # fmt: skip
    assert isinstance(got[1], gomap.TaskError)
    final = out.getvalue().rsplit("\r", 1)[-1]
    assert "4/4" in final and "2 failed" in final
    assert "\x1b[38;2;217;83;79m" in final  # the danger colour, #d9534f


def test_progress_text_off_and_the_environment(client, monkeypatch):
    out = io.StringIO()
    gomap.map("sampleadd", [(1, 2)], client=client, progress="text", tqdm_kwargs={"file": out})
    assert "1/1" in out.getvalue()
    monkeypatch.setenv("GOMAP_PROGRESS", "off")
    out = io.StringIO()
    gomap.map("sampleadd", [(1, 2)], client=client, tqdm_kwargs={"file": out})
    assert out.getvalue() == ""
    monkeypatch.setenv("GOMAP_PROGRESS", "text")
    gomap.map("sampleadd", [(1, 2)], client=client, tqdm_kwargs={"file": out})
    assert "1/1" in out.getvalue()  # shown although the output is not a terminal
    monkeypatch.setenv("GOMAP_PROGRESS", "sometimes")
    with pytest.raises(gomap.ConfigError, match="GOMAP_PROGRESS='sometimes'"):
        gomap.map("sampleadd", [(1, 2)], client=client)
    monkeypatch.delenv("GOMAP_PROGRESS")
    with pytest.raises(gomap.ConfigError, match="progress must be"):
        gomap.map("sampleadd", [(1, 2)], client=client, progress="bar")


def test_the_final_static_bar_shows_the_final_counts():
    bar = Recording(total=24, desc="samplesleep", unit="item", bar_format=_progress._COUNTED)
    bar.n = 24
    page = _progress._static(bar, failed=0)
    assert "24/24" in page["text/plain"] and "24/24" in page["text/html"]
    assert "width:100.0%" in page["text/html"] and _progress._SUCCESS in page["text/html"]
    bar.n = 20
    assert _progress._DANGER in _progress._static(bar, failed=1)["text/html"]


def short(e: BaseException) -> list[str]:
    return "".join(traceback.format_exception(e)).splitlines()


def test_errors_reach_the_caller_without_internal_frames_or_chains(client):
    with pytest.raises(gomap.EncodeError) as info:
        gomap.map("sampleadd", [(1, Decimal("2.5"))], client=client, progress=False)
    lines = short(info.value)
    assert len(lines) <= 8, "\n".join(lines)  # the call, the raise in gomap.map, the message
    assert "During handling" not in "\n".join(lines) and "direct cause" not in "\n".join(lines)
    assert "Decimal" in lines[-1] and "convert it first" in lines[-1]  # what happened, and what to do

    with pytest.raises(gomap.TaskError) as task:
        gomap.map("samplediv", [(1, 0)], client=client, progress=False)
    assert len(short(task.value)) <= 8, "\n".join(short(task.value))

    with pytest.raises(gomap.UnknownFunctionError) as unknown:
        list(gomap.imap("sampleaddd", [(1, 2)], client=client, progress=False))
    assert len(short(unknown.value)) <= 8, "\n".join(short(unknown.value))


INTERRUPTED = """
import sys, gomap
client = gomap.Client(sys.argv[1])
print("started", flush=True)
gomap.map("samplesleep", [0.5] * 40, chunksize=1, client=client, progress=False)
"""


def test_an_interrupt_ends_in_one_line_that_says_what_was_cancelled(redis_server, worker, tmp_path):
    script = tmp_path / "interrupted.py"
    script.write_text(textwrap.dedent(INTERRUPTED))
    proc = subprocess.Popen(
        [sys.executable, str(script), redis_server.url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"started\n"
        r = redis_server.redis
        wait_until(lambda: r.keys("goworker:gomap:{*}:meta"), what="the batch to start")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    text = err.decode()
    lines = text.strip().splitlines()
    assert re.fullmatch(
        r"KeyboardInterrupt: gomap: interrupted; batch \w{8} of samplesleep cancelled with \d+ of 40 items done: "
        r"\d+ queued chunks removed(, \d+ running chunks? stopping)?",
        lines[-1],
    ), text
    assert len(lines) <= 6, text
    assert "site-packages/redis" not in text
    wait_until(lambda: not r.keys("goworker:gomap:{*"), what="the batch's keys to go")
    assert r.llen("goworker:queue:samplesleep") == 0


def test_a_notebook_without_ipywidgets_gets_a_text_bar(monkeypatch, capsys):
    # In a kernel (gomap._frontend.in_notebook, the seam) with ipywidgets not importable: a text bar on
    # stdout, shown although stdout is no terminal, and one line saying how to get the widget.
    monkeypatch.setattr(_progress, "in_notebook", lambda: True)
    monkeypatch.setattr(_frontend, "in_notebook", lambda: True)
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # import ipywidgets raises ImportError
    monkeypatch.setattr(_progress, "_hinted", set())
    for _ in range(2):
        bar = _progress.make_progress(None, total=3, desc="sampleadd")
        bar.advance(3, 0)
        bar.close(3, 0)
    out = capsys.readouterr().out
    assert "3/3" in out
    assert out.count('pip install "gomap[notebook]"') == 1, out
