"""The progress bar of map and imap: a widget in Jupyter, text in a terminal.

The bar shows the items done: those of the chunks collected, plus those the workers report done
inside chunks still running (docs/protocol.md, "Progress"). The collect loop wakes at least every
half second and hands the bar the latest counts; the bar redraws when they changed (at most ten
times a second: a redraw put off asks the loop to wake again in time) and at least every half
second, so its clock never freezes. What it shows only grows.
"""

from __future__ import annotations

import html
import os
import sys
import time
from collections.abc import Mapping
from typing import Any

from ._exceptions import ConfigError
from ._frontend import in_notebook, say

PROGRESS_ENV = "GOMAP_PROGRESS"
"""Environment variable read when ``progress=None``: auto, widget, text, on or off."""

REDRAW_MIN = 0.1
"""Least seconds between two redraws while counts change."""

REDRAW_MAX = 0.5
"""Seconds after which a batch's bar is redrawn even if its counts stayed the same, so the elapsed
time keeps moving. The collect loop wakes at least every half second, so the bar moves at least
once a second."""

_MODES = {"auto": None, "widget": "widget", "text": "text", "on": True, "off": False}
_WORDS = {"1": "on", "true": "on", "yes": "on", "0": "off", "false": "off", "no": "off", "": "auto"}


def _now() -> float:
    return time.monotonic()


_COUNTED = "{l_bar}{bar}| {n:,}/{total:,} [{elapsed}<{remaining}, {rate_fmt}{postfix}]"
_UNCOUNTED = "{desc}: {n:,} [{elapsed}, {rate_fmt}{postfix}]"
_DANGER = "#d9534f"  # the colours of ipywidgets' bar styles (Bootstrap's)
_SUCCESS = "#5cb85c"


class Progress:
    """A bar over ``total`` items (None: unknown). ``advance`` is called with the running counts at
    every wake-up of the collect loop, ``close`` once at the end."""

    def advance(self, done: int, failed: int) -> float | None:
        """Show the counts; return the seconds within which to be called again (a redraw was put
        off), or None."""
        return None

    def close(self, done: int, failed: int) -> None:
        pass


class _Bar(Progress):
    """Drives a tqdm bar: the count only grows, and a redraw happens when counts changed (not more
    than every REDRAW_MIN seconds) and at least every REDRAW_MAX seconds. (tqdm's own ``update``
    skips the draw within ``mininterval``, and with no later update the skipped count would stay
    unseen: so the count is set and drawn here instead.)"""

    def __init__(self, bar: Any) -> None:
        self.bar = bar
        self.failed = 0
        self._drawn_at = _now()
        self._drawn = (0, 0)

    def advance(self, done: int, failed: int) -> float | None:
        bar = self.bar
        total = bar.total
        done = max(bar.n, done if total is None else min(done, total))
        if failed > self.failed:
            self.failed = failed
            bar.set_postfix_str(f"{failed:,} failed", refresh=False)
            self._failing()
        bar.n = done
        now = _now()
        since = now - self._drawn_at
        changed = (done, failed) != self._drawn
        if since >= REDRAW_MAX or (changed and since >= REDRAW_MIN - 0.001):  # (a woken loop may be early)
            bar.refresh()
            self._drawn_at, self._drawn = now, (done, failed)
        elif changed:
            return REDRAW_MIN - since
        return None

    def _failing(self) -> None:
        self.bar.colour = _DANGER

    def close(self, done: int, failed: int) -> None:
        self.advance(done, failed)
        self.bar.n = max(self.bar.n, done)  # the final count, whatever the clamp above did
        self.bar.close()


class _Widget(_Bar):
    """tqdm's notebook widget, shown through a display handle. At the end the widget is swapped for
    the same bar in static HTML (and text), so a saved notebook shows the final counts wherever it is
    opened again, with or without the widget's state."""

    def __init__(self, bar: Any, leave: bool) -> None:
        super().__init__(bar)
        from IPython.display import display

        self._leave = leave
        self._handle = display(bar.container, display_id=True)

    def _failing(self) -> None:
        self.bar.container.children[1].bar_style = "danger"

    def close(self, done: int, failed: int) -> None:
        super().close(done, failed)
        bar = self.bar
        if self._handle is not None:
            if self._leave:
                self._handle.update(_static(bar, self.failed), raw=True)
            else:
                self._handle.update({"text/plain": ""}, raw=True)
        bar.container.close()


def _static(bar: Any, failed: int) -> dict[str, str]:
    """The bar as static HTML and text: what a notebook keeps once the batch is over."""
    d = bar.format_dict
    text = bar.format_meter(**d)
    d["bar_format"] = (d["bar_format"] or "{l_bar}{bar}{r_bar}").replace("{bar}", "<bar/>")
    left, _, right = bar.format_meter(**d).partition("<bar/>")
    total = d.get("total") or 0
    frac = 1.0 if not total else min(1.0, d["n"] / total)
    colour = _DANGER if failed or (total and d["n"] < total) else _SUCCESS
    font = "font-family:var(--jp-code-font-family,monospace)"
    page = (
        '<div class="gomap-progress" style="display:flex;flex-wrap:wrap;align-items:center;gap:0 0.5em">'
        f'<span style="{font}">{html.escape(left.rstrip("|"))}</span>'
        '<span style="flex:0 1 30em;min-width:8em;height:1.1em;background:#eee;border-radius:2px">'
        f'<span style="display:block;height:100%;width:{frac:.1%};background:{colour};border-radius:2px">'
        "</span></span>"
        f'<span style="{font}">{html.escape(right.lstrip("|"))}</span></div>'
    )
    return {"text/plain": text, "text/html": page}


def _mode(progress: bool | str | None) -> bool | str | None:
    """None (auto), True (on), False (off), "widget" or "text"; ``progress=None`` reads the
    environment variable."""
    if progress is None:
        word = os.environ.get(PROGRESS_ENV, "").strip().lower()
        word = _WORDS.get(word, word)
        if word not in _MODES:
            raise ConfigError(f"{PROGRESS_ENV}={os.environ[PROGRESS_ENV]!r}: use one of {', '.join(_MODES)}")
        return _MODES[word]
    if isinstance(progress, bool):
        return progress
    if progress in ("widget", "text"):
        return progress
    raise ConfigError(f"progress must be True, False, None, 'widget' or 'text', not {progress!r}")


_hinted: set[str] = set()


def _widgets_missing() -> bool:
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        if "ipywidgets" not in _hinted:
            _hinted.add("ipywidgets")
            say('gomap: ipywidgets is not installed, so the bar is text; pip install "gomap[notebook]" for a widget')
        return True
    return False


def make_progress(
    progress: bool | str | None,
    *,
    total: int | None,
    desc: str,
    tqdm_class: Any = None,
    tqdm_kwargs: Mapping[str, Any] | None = None,
) -> Progress:
    """The bar of one map or imap call.

    ``progress``: None (default; the environment variable GOMAP_PROGRESS may say otherwise) shows
    a widget in a notebook and text on a terminal, nothing when output goes to a file or a pipe;
    True always shows one; False never; "widget" or "text" choose the kind. A notebook without
    ipywidgets gets a text bar. ``tqdm_class`` and ``tqdm_kwargs`` pass through to tqdm.
    """
    mode = _mode(progress)
    if mode is False:
        return Progress()
    kwargs: dict[str, Any] = {
        "total": total,
        "desc": desc,
        "unit": "item",
        "unit_scale": True,  # the rate: 2.59Mitem/s
        "bar_format": _COUNTED if total is not None else _UNCOUNTED,  # the counts exact: 1,000,000/1,000,000
        "mininterval": 0,
    }
    kwargs.update(tqdm_kwargs or {})
    if tqdm_class is not None:
        kwargs.setdefault("disable", None if mode is None else False)
        return _Bar(tqdm_class(**kwargs))
    notebook = in_notebook()
    if notebook and mode in (None, True, "widget") and not _widgets_missing():
        from tqdm.notebook import tqdm as widget

        kwargs.pop("file", None)
        return _Widget(widget(display=False, **kwargs), leave=kwargs.get("leave", True))
    from tqdm import tqdm as text

    if notebook:
        kwargs.setdefault("file", sys.stdout)  # not the stderr box, which reads as a warning
    kwargs.setdefault("disable", None if mode is None and not notebook else False)
    return _Bar(text(**kwargs))
