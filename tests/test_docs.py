"""The examples in README.md run: Python blocks against a real worker, Go blocks are real code."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

import gomap

from .conftest import ROOT, Worker

README = (ROOT / "README.md").read_text()


EMBEDDED = "<!-- runs on the embedded default, in the directory of geo.go -->\n```python\n"


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, re.S)


def test_readme_python_examples_run(redis_server, worker):
    env = {**os.environ, "GOMAP_REDIS_URL": redis_server.url, "PYTHONPATH": str(ROOT)}
    found = [b for b in blocks("python") if EMBEDDED + b not in README]
    assert len(found) >= 4
    for i, code in enumerate(found):
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, f"README python block {i} failed:\n{code}\n{out.stderr}"
        if i == 0:
            assert out.stdout == "[3, 7]\n"  # the first screen's promise


def own_functions_section() -> tuple[str, str, str]:
    """The Go file, the Python block and the shell block of "Your own functions"."""
    section = README.split("## Your own functions", 1)[1].split("\n## ", 1)[0]
    go, python, sh = (re.search(rf"```{lang}\n(.*?)```", section, re.S) for lang in ("go", "python", "sh"))
    assert go and python and sh and EMBEDDED + python.group(1) in README
    return go.group(1), python.group(1), sh.group(1)


def test_readme_own_functions_run_on_the_embedded_default(tmp_path):
    go, python, _ = own_functions_section()
    (tmp_path / "geo.go").write_text(go)
    env = {k: v for k, v in os.environ.items() if k not in ("GOMAP_REDIS_URL", "REDIS_URL", "REDIS_PROVIDER")}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run(
        [sys.executable, "-c", python], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "<gomap.Function Haversine(lat1, lon1, lat2, lon2 float64) float64>",
        "877",
        "[10008, 10008]",
    ]


def test_readme_own_functions_ship_to_a_pool(tmp_path, fresh_redis):
    go, _, sh = own_functions_section()
    (tmp_path / "geo.go").write_text(go)
    build, run = (line.split("  #")[0].strip() for line in sh.strip().splitlines())
    subprocess.run(
        [sys.executable, "-m", "gomap", *shlex.split(build)[1:]], cwd=tmp_path, check=True, timeout=600,
        capture_output=True,
    )  # fmt: skip
    binary, flag, url = shlex.split(run)
    assert (binary, flag, url) == ("./gomap-worker-geo", "-uri", "$REDIS_URL")
    w = Worker(fresh_redis.url, binary=str(tmp_path / "gomap-worker-geo"))
    try:
        with gomap.Client(fresh_redis.url) as client:
            assert [round(x) for x in gomap.map("Haversine", [(0, 0, 0, 90)], client=client, progress=False)] == [10008]
    finally:
        w.stop()


def test_readme_go_lines_are_real_code():
    """Every complete line of the README's Go blocks stands in a compiled example."""
    sources = "\n".join(
        (ROOT / "worker" / p).read_text() for p in ("examples/myworker/main.go", "client/example_test.go")
    )
    code_lines = {line.strip() for line in sources.splitlines()}
    for block in blocks("go"):
        if block.startswith("// geo.go\n"):
            continue  # a user's file, compiled by test_readme_own_functions_*
        for line in block.splitlines():
            stmt = line.split("  //")[0].strip()
            if stmt and "…" not in stmt:
                assert stmt in code_lines, f"README Go line not in a compiled example: {stmt}"


def test_types_doc_runs(tmp_path):
    """docs/types.md: its Go file compiles, and its Python block prints what its comments say."""
    doc = (ROOT / "docs" / "types.md").read_text()
    go = re.search(r"```go\n(// types.go\n.*?)```", doc, re.S)
    python = re.search(
        r"<!-- runs on the embedded default, in the directory of types.go -->\n```python\n(.*?)```", doc, re.S
    )
    assert go and python
    (tmp_path / "types.go").write_text(go.group(1))
    env = {k: v for k, v in os.environ.items() if k not in ("GOMAP_REDIS_URL", "REDIS_URL", "REDIS_PROVIDER")}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run(
        [sys.executable, "-c", python.group(1)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr
    lines = python.group(1).splitlines()
    want = []  # each print's comment: on its line, or on the next line when it is long
    for i, line in enumerate(lines):
        if line.startswith("print("):
            want.append(line.split("  # ", 1)[1] if "  # " in line else lines[i + 1].removeprefix("# "))
    assert out.stdout.splitlines() == want


def test_tests_named_in_the_docs_exist():
    """docs/reliability.md and docs/protocol.md cite tests by name; each must exist, so a rename
    cannot leave a guarantee pointing at nothing."""
    defined = set()
    for path in [*ROOT.glob("tests/*.py"), *ROOT.glob("worker/**/*_test.go")]:
        if "vendor" not in path.parts:
            defined |= set(re.findall(r"^(?:def|func) ((?:test_|Test)\w+)", path.read_text(), re.M))
    for doc in ("docs/reliability.md", "docs/protocol.md"):
        cited = set(re.findall(r"`((?:test_|Test)\w+)`", (ROOT / doc).read_text()))
        assert cited, f"{doc} names no test"
        assert cited <= defined, f"{doc} cites tests that do not exist: {sorted(cited - defined)}"
