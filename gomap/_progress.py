"""The progress bar: tqdm.auto by default (a widget in Jupyter, text in a terminal)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol


class Bar(Protocol):
    def update(self, n: int) -> Any: ...

    def close(self) -> Any: ...


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def make_bar(
    progress: bool | None,
    *,
    total: int | None,
    desc: str,
    tqdm_class: Any = None,
    tqdm_kwargs: Mapping[str, Any] | None = None,
) -> Bar:
    """A bar over ``total`` items.

    ``progress=None`` (the default) shows it where tqdm would (``disable=None``: quiet when output
    is not a terminal, a widget in Jupyter); ``True`` always shows it; ``False`` never.
    ``tqdm_class`` (e.g. ``tqdm.tqdm`` for text in a notebook) and ``tqdm_kwargs`` (``file``,
    ``desc``, ``leave``, …) pass through to tqdm.
    """
    if progress is False:
        return _NoBar()
    if tqdm_class is None:
        from tqdm.auto import tqdm as tqdm_class
    kwargs: dict[str, Any] = {
        "total": total,
        "desc": desc,
        "unit": "item",
        "disable": None if progress is None else False,
    }
    kwargs.update(tqdm_kwargs or {})
    return tqdm_class(**kwargs)  # type: ignore[no-any-return]
