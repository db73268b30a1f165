"""What a pool can run: the functions its live workers advertise, with their Go signatures."""

from __future__ import annotations

import difflib
import html
import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, NamedTuple


class Param(NamedTuple):
    """A parameter of a Go function: its name (``""`` when the worker does not know it) and Go type."""

    name: str
    type: str


@dataclass(frozen=True)
class FunctionInfo:
    """A Go function a pool can run, as its workers describe it (docs/protocol.md, "signatures").

    ``workers`` is how many live worker processes offer it (0 for a function only compiled here).
    """

    name: str
    params: tuple[Param, ...] = ()
    result: str = ""
    returns_error: bool = False
    variadic: bool = False
    doc: str = ""
    known: bool = False  # whether a signature was advertised (old or hand-written handlers may not)
    workers: int = 0

    @staticmethod
    def from_record(name: str, sig: Mapping[str, Any] | None, workers: int = 0) -> FunctionInfo:
        """From a worker record's signature (or gomap-gen's description of a function)."""
        if not sig:
            return FunctionInfo(name, workers=workers)
        params = tuple(Param(str(p.get("name") or ""), str(p.get("type") or "")) for p in sig.get("params") or ())
        return FunctionInfo(
            name=name,
            params=params,
            result=str(sig.get("result") or ""),
            returns_error=bool(sig.get("error")),
            variadic=bool(sig.get("variadic")),
            doc=str(sig.get("doc") or "").strip(),
            known=True,
            workers=workers,
        )

    @property
    def signature(self) -> str:
        """The Go signature, as Go writes it: ``func Haversine(lat1, lon1, lat2, lon2 float64) float64``."""
        if not self.known:
            return f"func {self.name}(…)"
        return f"func {self.name}({self._params()}){self._results()}"

    def _params(self) -> str:
        types = [p.type for p in self.params]
        if self.variadic and types:
            types[-1] = "..." + types[-1]
        if not all(p.name for p in self.params):
            return ", ".join(types)
        groups = []  # consecutive parameters of one type share it, as gofmt writes them
        for typ, group in itertools.groupby(zip(self.params, types, strict=True), key=lambda pt: pt[1]):
            groups.append(f"{', '.join(p.name for p, _ in group)} {typ}")
        return ", ".join(groups)

    def _results(self) -> str:
        if self.result and self.returns_error:
            return f" ({self.result}, error)"
        if self.result:
            return " " + self.result
        return " error" if self.returns_error else ""

    @property
    def summary(self) -> str:
        """The first line of the doc comment."""
        return self.doc.splitlines()[0] if self.doc else ""

    def with_workers(self, workers: int) -> FunctionInfo:
        return replace(self, workers=workers)


class FunctionList(list[FunctionInfo]):
    """``gomap.functions()``: a list of FunctionInfo that shows as a table (HTML in Jupyter)."""

    def names(self) -> list[str]:
        return [f.name for f in self]

    def __repr__(self) -> str:
        if not self:
            return "no live worker offers any function"
        width = max(len(f.name) for f in self)
        rows = [f"{'function':<{width}}  workers  signature"]
        rows += [f"{f.name:<{width}}  {f.workers:>7}  {f.signature}" for f in self]
        return "\n".join(rows)

    def _repr_html_(self) -> str:
        cells = "".join(
            f"<tr><td><code>{html.escape(f.name)}</code></td><td>{f.workers}</td>"
            f"<td><code>{html.escape(f.signature)}</code></td><td>{html.escape(f.summary)}</td></tr>"
            for f in self
        )
        return (
            "<table><thead><tr><th>function</th><th>workers</th><th>Go signature</th><th>doc</th></tr></thead>"
            f"<tbody>{cells}</tbody></table>"
        )


def from_records(records: Iterable[Mapping[str, Any]]) -> FunctionList:
    """The functions that worker records offer, with how many offer each, sorted by name."""
    infos: dict[str, FunctionInfo] = {}
    counts: dict[str, int] = {}
    for rec in records:
        sigs = rec.get("signatures") or {}
        for name in rec.get("functions") or ():
            counts[name] = counts.get(name, 0) + 1
            info = FunctionInfo.from_record(name, sigs.get(name))
            if name not in infos or (info.known and not infos[name].known):
                infos[name] = info
    return FunctionList(infos[n].with_workers(counts[n]) for n in sorted(infos))


def closest(name: str, offered: Iterable[str]) -> str | None:
    """The offered name most like ``name`` (ignoring case), if one is close enough to suggest."""
    by_lower = {o.lower(): o for o in offered}
    match = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[match[0]] if match else None
