"""pandas accessors: ``df.gomap.apply`` and ``series.gomap.map`` (filled in below)."""

from __future__ import annotations

_registered = False


def register() -> None:
    """Register the accessors with pandas (once)."""
    global _registered
    if _registered:
        return
    _registered = True
