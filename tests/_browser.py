"""JupyterLab and headless Chromium for tests/test_browser.py: a JupyterLab server of the test's own
(in a temporary directory, on 127.0.0.1, with the project venv's kernel) and the page scripts that
read a notebook's cells from a real browser."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import secrets
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

import pytest

from .conftest import pid_alive, stop_process, wait_until

CHROMIUM = "/usr/bin/chromium"
MISSING = "Chromium not installed: apt-get install chromium (.ci/run does)"


def require_browser() -> None:
    """Skip the test where Chromium, Playwright or JupyterLab is missing; in CI (CI=true) fail instead,
    so that a missing install step is caught."""
    reasons = [] if os.access(CHROMIUM, os.X_OK) else [MISSING]
    modules = [m for m in ("playwright", "jupyterlab") if importlib.util.find_spec(m) is None]
    if modules:
        reasons.append(f"{' and '.join(modules)} not installed: pip install -e '.[dev]'")
    if reasons:
        message = "; ".join(reasons)
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)


def descendants(pid: int) -> list[int]:
    """The PIDs of pid's living descendants (children, their children, …), read from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(") ", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return [p for p in found if pid_alive(p)]


# JupyterLab settings of the test's own: every cell stays in the page (no windowing, so a cell out of
# view still has its outputs in the DOM), and no notification asks to fetch news from the internet.
USER_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
        "doNotDisturbMode": True,
    },
}

NO_REDIS = ("GOMAP_REDIS_URL", "REDIS_URL", "REDIS_PROVIDER")


class JupyterLab:
    """A JupyterLab server on 127.0.0.1 (a port of its own choosing), serving ``root``, with HOME and
    every Jupyter directory under ``tmp``. Its kernels run this Python (the project venv) without a
    Redis configured, so gomap starts its embedded default inside the kernel. Stopped by its PID;
    leaving, it checks that every process it started (kernels, their local clusters) is gone."""

    START_TIMEOUT = 20.0
    STOP_TIMEOUT = 20.0

    def __init__(self, tmp: Path, root: Path, env: Mapping[str, str] | None = None) -> None:
        self.tmp, self.root = tmp, root
        self.token = secrets.token_hex(16)
        self.runtime = tmp / "runtime"
        self.log = tmp / "jupyterlab.log"
        self.env = {k: v for k, v in os.environ.items() if k not in NO_REDIS}
        self.env.update(
            HOME=str(tmp / "home"),
            JUPYTER_CONFIG_DIR=str(tmp / "config"),
            JUPYTER_DATA_DIR=str(tmp / "data"),
            JUPYTER_RUNTIME_DIR=str(self.runtime),
            IPYTHONDIR=str(tmp / "ipython"),
            PYTHONUNBUFFERED="1",
        )
        self.env.update(env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def __enter__(self) -> JupyterLab:
        settings = self.tmp / "config" / "lab" / "user-settings"
        for name, values in USER_SETTINGS.items():
            (settings / name).parent.mkdir(parents=True, exist_ok=True)
            (settings / name).write_text(json.dumps(values))
        (self.tmp / "home").mkdir(exist_ok=True)
        args = [
            sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
            "--ServerApp.ip=127.0.0.1", "--ServerApp.port=0",  # 0: a free port, read from the runtime file
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root}",
            "--LabApp.expose_app_in_browser=True",  # window.jupyterapp, for the page scripts
            "--LabApp.extension_manager=readonly",  # no PyPI queries
        ]  # fmt: skip
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(args, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=self.root)
        try:
            info = self.runtime / f"jpserver-{self.proc.pid}.json"
            wait_until(
                lambda: self.proc is not None and (self.proc.poll() is not None or info.is_file()),
                self.START_TIMEOUT,
                "JupyterLab writes its runtime file",
            )
            assert self.proc.poll() is None, f"JupyterLab exited at start:\n{self.log_tail()}"
            wait_until(lambda: self._port_from(info), 5.0, "the runtime file has the port")
            wait_until(self._answers, self.START_TIMEOUT, f"JupyterLab answers on 127.0.0.1:{self.port}")
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _port_from(self, info: Path) -> bool:
        with contextlib.suppress(OSError, ValueError):
            self.port = int(json.loads(info.read_text())["port"])
        return self.port > 0

    def _answers(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, f"JupyterLab exited:\n{self.log_tail()}"
        request = urllib.request.Request(self.url("api/status"), headers={"Authorization": f"token {self.token}"})
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def url(self, path: str) -> str:
        """The URL of path on the server, without the token."""
        return f"http://127.0.0.1:{self.port}/{path}"

    def page_url(self, path: str) -> str:
        """The URL of path on the server, with the token (it logs the page in)."""
        return f"{self.url(path)}?token={self.token}"

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.is_file() else ""

    def stop(self) -> None:
        """SIGTERM to the server (it shuts its kernels down; a kernel stops its local cluster at exit),
        then check that all its descendants exit; any left is killed by PID and fails the test."""
        if self.proc is None:
            return
        started = descendants(self.proc.pid)
        stop_process(self.proc, signal.SIGTERM, self.STOP_TIMEOUT)
        self.proc = None
        try:
            wait_until(lambda: not any(pid_alive(p) for p in started), 10.0, "the kernels and their clusters exit")
        except AssertionError:
            left = [p for p in started if pid_alive(p)]
            names = {p: _cmdline(p) for p in left}
            for p in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGKILL)
            raise AssertionError(f"processes left after JupyterLab stopped (now killed): {names}") from None


def _cmdline(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    return "?"


# Page scripts. They use window.jupyterapp (--LabApp.expose_app_in_browser) to find the notebook's
# cells by their ids; everything they return is read from the DOM, as a user sees it.

NOTEBOOK_READY = """(args) => {
    const app = window.jupyterapp;
    const panel = app && app.shell.currentWidget;
    if (!panel || !panel.context || panel.context.path !== args.path || !panel.sessionContext) return false;
    const session = panel.sessionContext.session;
    const kernel = session && session.kernel;
    return !!(kernel && kernel.status === 'idle' && panel.content.widgets.length === args.cells);
}"""

# Marks the cells' nodes with data-gomap-cell (for locators) and records the text of one cell's output
# area: every change, when the DOM changes (a MutationObserver) and at the latest every 100 ms. A
# sample is {t: seconds since install, text, widget: whether a widget view is in the output}.
RECORD = """(id) => {
    const panel = window.jupyterapp.shell.currentWidget;
    let cell = null;
    for (const c of panel.content.widgets) {
        c.node.dataset.gomapCell = c.model.id;
        if (c.model.id === id) cell = c;
    }
    const rec = window.__gomapRecord = {t0: performance.now(), samples: [], widgetError: false};
    const record = () => {
        const area = cell.outputArea.node;
        const text = area.innerText;
        if (text.includes('Error displaying widget')) rec.widgetError = true;
        const last = rec.samples[rec.samples.length - 1];
        if (!last || last.text !== text) {
            const widget = !!area.querySelector('.jupyter-widgets, .widget-hbox');
            rec.samples.push({t: (performance.now() - rec.t0) / 1000, text, widget});
        }
    };
    new MutationObserver(record).observe(cell.node, {childList: true, subtree: true, characterData: true});
    rec.interval = setInterval(record, 100);
    return true;
}"""

RECORDED = "() => window.__gomapRecord"

# Each code cell's state from the page: its execution count (the prompt), the rendered text of each
# output, and which outputs are errors (by the output's index in the cell's model).
CELLS = """() => {
    const panel = window.jupyterapp.shell.currentWidget;
    return panel.content.widgets.filter(c => c.model.type === 'code').map(c => {
        const types = [];
        for (let i = 0; i < c.model.outputs.length; i++) types.push(c.model.outputs.get(i).type);
        return {
            id: c.model.id,
            count: c.model.executionCount,
            types,
            texts: c.outputArea.widgets.map(w => w.node.innerText),
        };
    });
}"""

ANY_ERROR = """() => window.jupyterapp.shell.currentWidget.content.widgets.some(
    c => c.model.type === 'code' && Array.from({length: c.model.outputs.length}, (_, i) => c.model.outputs.get(i).type)
        .includes('error'))"""
