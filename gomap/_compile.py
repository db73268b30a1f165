"""gomap.compile: Go source becomes a worker binary holding the samples and every exported function.

The build happens in a copy of the worker module in the cache (its dependencies are vendored, so
it needs Go and nothing else). Each compiled source is a *unit*, a Go package of its own under
``gomapuser/``: its files carry ``//line`` directives, so the compiler names the user's file or cell
and line. ``gomap-gen`` (worker/cmd/gomap-gen) finds the exported functions of a unit and writes
their registration; a generated main registers the samples and every unit, then runs
``workercmd.Main``. Units, binaries and their function lists are cached by content, so compiling
the same source again does not call the Go toolchain.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import threading
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _binary
from ._exceptions import CompileError, CompileMessage, ConfigError, WorkerBinaryError
from ._functions import FunctionInfo

if TYPE_CHECKING:
    from ._local import LocalCluster
    from ._map import Function

MODULE = "github.com/gomap/gomap/worker"

_PACKAGE_CLAUSE = re.compile(r"^\s*package\s+\w+", re.M)


@dataclass(frozen=True)
class Unit:
    """One compiled source: its Go files as written into the build, named for messages by label."""

    label: str
    files: tuple[tuple[str, str], ...]  # (file name, text with its //line directive)
    originals: tuple[tuple[str, str], ...]  # (the name //line gives, the user's text), for messages

    @functools.cached_property
    def key(self) -> str:
        h = hashlib.sha256()
        for name, text in self.files:
            h.update(name.encode() + b"\0" + text.encode() + b"\0")
        return "u" + h.hexdigest()[:20]


def _line_directive(name: str) -> str:
    # name:1:1 (not name:1) so the compiler reports columns too.
    return f"//line {name}:1:1\n"


def snippet_unit(source: str, label: str, *, header: str | None = None) -> Unit:
    """A unit of Go source text: top-level declarations, with or without a package clause.

    ``header`` is a line the user sees above the source (a notebook cell's ``%%gomap``), so
    messages count lines as the user does."""
    prefix = "" if _PACKAGE_CLAUSE.search(_strip_comments(source)) else "package main\n"
    first = 1 if header is None else 2
    text = prefix + f"//line {label}:{first}:1\n" + source
    shown = source if header is None else header + "\n" + source
    return Unit(label=label, files=(("source.go", text),), originals=((label, shown),))


def _strip_comments(source: str) -> str:
    return re.sub(r"//[^\n]*|/\*.*?\*/", "", source, flags=re.S)


def path_unit(path: Path) -> Unit:
    """A unit of a .go file, or of a package directory's non-test .go files."""
    path = path.resolve()
    if path.is_dir():
        paths = sorted(p for p in path.glob("*.go") if not p.name.endswith("_test.go"))
        if not paths:
            raise ConfigError(f"{path} holds no .go file")
    elif path.is_file():
        paths = [path]
    else:
        raise ConfigError(f"{path}: no such Go file or package directory")
    originals = tuple((str(p), p.read_text()) for p in paths)
    files = tuple((f"f{i}_{Path(name).name}", _line_directive(name) + text) for i, (name, text) in enumerate(originals))
    return Unit(label=str(path), files=files, originals=originals)


def as_unit(source: str | os.PathLike[str], label: str | None = None) -> Unit:
    """Read what ``gomap.compile`` was given: a path (file or package directory) or Go source text."""
    if isinstance(source, os.PathLike):
        return path_unit(Path(source))
    if not isinstance(source, str) or not source.strip():
        raise ConfigError(f"compile needs Go source text, a .go file or a package directory, not {source!r}")
    if "\n" not in source and (source.endswith(".go") or os.path.isdir(source)):
        return path_unit(Path(source))
    return snippet_unit(source, label or "source")


# -- the build tree ---------------------------------------------------------------------------------


class Builder:
    """Builds worker binaries from units, in the cache of ``environ``."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self.environ = dict(os.environ if environ is None else environ)
        src = _binary.worker_source()
        if src is None:
            raise WorkerBinaryError("compiling needs gomap's Go worker source, which this installation lacks")
        self.src = src
        self.src_hash = _binary.source_hash(src)
        self.cache = _binary.cache_dir(self.environ)
        self.tree_dir = self.cache / f"tree-{self.src_hash}"

    def go_identity(self) -> str:
        """The Go toolchain's version, read from its GOROOT without running it (so a cache hit calls
        no Go); a toolchain without a VERSION file is known by its binary's size and time."""
        go = _binary.go_command(self.environ, "compiling Go functions")
        real = Path(os.path.realpath(go))
        try:
            return (real.parent.parent / "VERSION").read_text().splitlines()[0].strip()
        except (OSError, IndexError):
            st = real.stat()
            return f"{real}:{st.st_size}:{st.st_mtime_ns}"

    def tree(self) -> Path:
        """A copy of the worker module (with its vendored dependencies) to build units in."""
        tree = self.tree_dir
        if (tree / "go.mod").is_file():
            return tree
        with _binary.locked(tree.with_name(tree.name + ".lock")):
            if (tree / "go.mod").is_file():
                return tree
            tmp = tree.with_name(f"{tree.name}.{os.getpid()}.tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(self.src, tmp, ignore=self._not_build_inputs)
            tmp.replace(tree)
        return tree

    def _not_build_inputs(self, directory: str, names: list[str]) -> set[str]:
        here = Path(directory)
        return {
            n
            for n in names
            if (
                n in ("testdata", "gomapuser", "bin")
                if (here / n).is_dir()
                else not _binary.is_build_input(here / n, self.src)
            )
        }

    def generator(self) -> Path:
        return _binary.build_command(self.src, "./cmd/gomap-gen", "gomap-gen", self.environ)

    def unit_functions(self, unit: Unit) -> list[dict[str, Any]] | None:
        """The functions of a unit built before (no toolchain needed), else None."""
        path = self.tree_dir / "gomapuser" / unit.key / "gomap.json"
        try:
            return list(json.loads(path.read_text())["functions"])
        except (OSError, ValueError, KeyError):
            return None

    def prepare_unit(self, unit: Unit) -> list[dict[str, Any]]:
        """Write the unit into the tree and generate its registration; return its functions."""
        known = self.unit_functions(unit)
        if known is not None:
            return known
        tree = self.tree()
        final = tree / "gomapuser" / unit.key
        with _binary.locked(final.with_name(unit.key + ".lock")):
            known = self.unit_functions(unit)  # another process prepared it while we waited
            if known is not None:
                return known
            tmp = final.with_name(f"{unit.key}.{os.getpid()}.tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            for name, text in unit.files:
                (tmp / name).write_text(text)
            out = _binary.run_tool(
                [str(self.generator()), "-unit", str(tmp), "-package", unit.key],
                cwd=tree,
                what="reading your Go source",
            )
            if out.returncode != 0:
                shutil.rmtree(tmp, ignore_errors=True)
                raise compile_error(out.stderr, unit)
            description = json.loads(out.stdout)
            (tmp / "gomap.json").write_text(json.dumps(description))
            shutil.rmtree(final, ignore_errors=True)
            tmp.replace(final)
        return list(description["functions"])

    def binary_dir(self, units: Sequence[Unit], goos: str | None, goarch: str | None) -> Path:
        h = hashlib.sha256()
        for part in (self.src_hash, self.go_identity(), goos or "", goarch or "", *sorted(u.key for u in units)):
            h.update(part.encode() + b"\0")
        return self.cache / f"functions-{h.hexdigest()[:20]}"

    def build(self, units: Sequence[Unit], *, goos: str | None = None, goarch: str | None = None) -> Built:
        """A worker binary holding the samples and every function of units (cached by content)."""
        out_dir = self.binary_dir(units, goos, goarch)
        built = Built.load(out_dir)
        if built is not None:
            return built
        functions = [f for u in units for f in self.prepare_unit(u)]
        _check_unique(functions)
        with _binary.locked(out_dir.with_name(out_dir.name + ".lock")):
            built = Built.load(out_dir)
            if built is not None:
                return built
            tree = self.tree()
            main = tree / "gomapuser" / ("m" + out_dir.name.split("-", 1)[1])
            main.mkdir(parents=True, exist_ok=True)
            (main / "main.go").write_text(main_source(units))
            tmp = out_dir.with_name(f"{out_dir.name}.{os.getpid()}.tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            env = {k: v for k, v in (("GOOS", goos), ("GOARCH", goarch)) if v}
            out = _binary.run_go(
                [
                    "build",
                    "-trimpath",
                    "-ldflags=-s -w",
                    "-o",
                    str(tmp / "gomap-worker"),
                    "./" + str(main.relative_to(tree)),
                ],
                cwd=tree,
                environ={**self.environ, **env},
                what="compiling Go functions",
            )
            if out.returncode != 0:
                shutil.rmtree(tmp, ignore_errors=True)
                raise compile_error(out.stderr, *units)
            (tmp / "functions.json").write_text(json.dumps({"functions": functions, "goos": goos, "goarch": goarch}))
            shutil.rmtree(out_dir, ignore_errors=True)
            tmp.replace(out_dir)
        built = Built.load(out_dir)
        assert built is not None
        return built


def _check_unique(functions: Iterable[Mapping[str, Any]]) -> None:
    seen: dict[str, Mapping[str, Any]] = {}
    for f in functions:
        if f["name"] in seen:
            first = seen[f["name"]]
            raise CompileError(
                f"{f['name']} is defined twice: at {first['file']}:{first['line']} and at {f['file']}:{f['line']}",
                [],
            )
        seen[f["name"]] = f


def main_source(units: Sequence[Unit]) -> str:
    """The main package of a worker with the samples and the units' functions."""
    imports = "".join(f'\t"{MODULE}/gomapuser/{u.key}"\n' for u in units)
    calls = "".join(f"\t{u.key}.GomapRegister(reg)\n" for u in units)
    return (
        "// Code generated by gomap.compile. DO NOT EDIT.\n\n"
        "package main\n\nimport (\n"
        f'\t"{MODULE}"\n\t"{MODULE}/samples"\n\t"{MODULE}/workercmd"\n{imports})\n\n'
        "func main() {\n\treg := worker.NewRegistry()\n\tsamples.Register(reg)\n"
        f"{calls}\tworkercmd.Main(reg)\n}}\n"
    )


@dataclass(frozen=True)
class Built:
    """A built worker binary and the functions it adds to the samples."""

    binary: Path
    functions: tuple[FunctionInfo, ...]
    goos: str | None = None
    goarch: str | None = None

    @staticmethod
    def load(directory: Path) -> Built | None:
        binary = directory / "gomap-worker"
        try:
            desc = json.loads((directory / "functions.json").read_text())
        except (OSError, ValueError):
            return None
        if not binary.is_file():
            return None
        functions = tuple(FunctionInfo.from_record(f["name"], f) for f in desc["functions"])
        return Built(binary, functions, desc.get("goos"), desc.get("goarch"))


# -- compiler messages ------------------------------------------------------------------------------

_POSITION = re.compile(r"^(?P<file>.+?):(?P<line>\d+)(?::(?P<col>\d+))?: (?P<msg>.*)$")


def compile_error(stderr: str, *units: Unit) -> CompileError:
    """A CompileError from the Go tools' output, with each position shown in the user's source."""
    sources = {name: text.splitlines() for u in units for name, text in u.originals}
    messages: list[CompileMessage] = []
    other: list[str] = []
    for line in stderr.splitlines():
        m = _POSITION.match(line.strip())
        if m and m["file"] in sources:
            messages.append(CompileMessage(m["file"], int(m["line"]), int(m["col"] or 0), m["msg"], sources[m["file"]]))
        elif line.strip() and not line.startswith("#"):
            other.append(line.rstrip())
    if not messages and not other:
        other = ["the Go toolchain failed without saying why"]
    return CompileError(
        "Go could not compile the source:\n" + "\n".join([m.render() for m in messages] + other), messages
    )


# -- the session ------------------------------------------------------------------------------------


class Session:
    """What this Python process compiled: the units its local workers run, oldest first.

    Compiling a unit whose functions share a name with an earlier unit replaces that unit (an
    edited notebook cell replaces its previous version); other units stay.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._units: list[tuple[Unit, frozenset[str]]] = []
        self.built: Built | None = None
        self._clusters: weakref.WeakSet[LocalCluster] = weakref.WeakSet()

    def plan(self, unit: Unit, names: Iterable[str]) -> list[tuple[Unit, frozenset[str]]]:
        """The units after adding ``unit`` (whose functions are ``names``)."""
        new = frozenset(names)
        with self._lock:
            keep = [(u, n) for u, n in self._units if u.key != unit.key and not (n & new)]
        return [*keep, (unit, new)]

    def commit(self, units: list[tuple[Unit, frozenset[str]]], built: Built) -> None:
        with self._lock:
            self._units = units
            self.built = built

    def binary(self) -> Path | None:
        """The binary holding every function compiled in this process, if any was."""
        with self._lock:
            return None if self.built is None else self.built.binary

    def follow(self, cluster: LocalCluster) -> None:
        """Have ``cluster`` run the session's binary from now on, through every later compile."""
        with self._lock:
            self._clusters.add(cluster)

    def swap_clusters(self, binary: Path) -> None:
        with self._lock:
            clusters = list(self._clusters)
        for cluster in clusters:
            if cluster.running:
                cluster.swap(str(binary))


SESSION = Session()


class Compiled(Mapping[str, "Function"]):
    """What ``gomap.compile`` returns: the handles of the compiled functions, by their Go names
    (also as attributes: ``geo.Haversine``), and the worker ``binary`` that holds them."""

    def __init__(self, handles: Mapping[str, Function], binary: Path) -> None:
        self._handles = dict(handles)
        self.binary = binary

    def __getitem__(self, name: str) -> Function:
        return self._handles[name]

    def __getattr__(self, name: str) -> Function:
        try:
            return self._handles[name]
        except KeyError:
            raise AttributeError(name) from None

    def __dir__(self) -> list[str]:
        return [*self._handles, "binary"]

    def __iter__(self) -> Iterator[str]:
        return iter(self._handles)

    def __len__(self) -> int:
        return len(self._handles)

    def __repr__(self) -> str:
        return "\n".join(f"compiled {h.info.signature if h.info else h.name}" for h in self._handles.values())


def compile(source: str | os.PathLike[str], *, name: str | None = None) -> Compiled:
    """Compile Go functions into the workers and return their handles by name.

    ``source`` is Go source text (top-level functions; the package clause and imports are up to
    you, ``package main`` is assumed without one), a ``.go`` file, or a package directory. Every
    exported function (a top-level ``func`` whose name starts with a capital letter) is registered
    under its Go name, beside the samples. Argument and result types are any that JSON carries:
    numbers, bools, strings, slices, maps, structs with JSON tags (docs/types.md).

    The embedded default follows: its workers are swapped for a binary that holds every function
    compiled in this process (running chunks finish or go back to the queue; Redis stays up). For
    a pool of your own, ``gomap build --functions FILE -o BINARY`` writes a worker to run there.

    Builds are cached by content: compiling the same source again does not run Go. A compiler
    error raises CompileError, its messages shown at the lines of your source (``name`` labels a
    snippet in them; a notebook cell is ``cell``).
    """
    return compile_unit(as_unit(source, name))


def compile_unit(unit: Unit) -> Compiled:
    """``gomap.compile`` of a unit: build, make the session's clusters run it, return handles."""
    from ._map import Function

    builder = Builder()
    names = {f["name"] for f in builder.prepare_unit(unit)}
    plan = SESSION.plan(unit, names)
    built = builder.build([u for u, _ in plan])
    SESSION.commit(plan, built)
    SESSION.swap_clusters(built.binary)
    handles = {f.name: Function(f.name, info=f) for f in built.functions if f.name in names}
    return Compiled(handles, built.binary)


def build(sources: Sequence[str | os.PathLike[str]], *, goos: str | None = None, goarch: str | None = None) -> Built:
    """A worker binary with the samples and the exported functions of ``sources`` (for ``gomap
    build --functions``); ``goos``/``goarch`` cross-compile it. The session is not changed."""
    return Builder().build([as_unit(s) for s in sources], goos=goos, goarch=goarch)
