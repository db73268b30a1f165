"""Where gomap talks to a person: a Jupyter kernel or a terminal."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager


def in_notebook() -> bool:
    """Whether this Python is a Jupyter kernel (a notebook, JupyterLab, VS Code's notebooks)."""
    if "ipykernel" not in sys.modules:
        return False
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - ipykernel always brings IPython
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def say(message: str, *, end: str = "\n") -> None:
    """Tell the person running gomap: in a notebook as plain output (not the stderr box, which reads
    as a warning), in a terminal or a script on stderr (so it stays out of piped output)."""
    stream = sys.stdout if in_notebook() else sys.stderr
    print(message, end=end, file=stream, flush=True)


class Step:
    """A step that may take a while, told as one line: its start ends in "…" and ``done`` finishes
    the same line (in a terminal and in a notebook alike, where consecutive output joins)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.started = time.monotonic()
        self.finished = False

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def done(self, message: str) -> None:
        """Finish the line with `` message``; ``{elapsed}`` in it becomes the seconds taken (0.7 s)."""
        if not self.finished:
            self.finished = True
            if not self.quiet:
                say(" " + message.replace("{elapsed}", f"{self.elapsed:.1f} s"))


@contextmanager
def step(message: str, *, quiet: bool = False) -> Iterator[Step]:
    """Say ``message…`` now, and finish the line when the step ends: with what the body passes to
    ``Step.done``, else "done in 0.7 s", or "failed" when it raises (the exception says why)."""
    if not quiet:
        say(message + "…", end="")
    s = Step(quiet)
    try:
        yield s
    except BaseException:
        s.done("failed")
        raise
    s.done("done in {elapsed}")
