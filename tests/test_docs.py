"""The examples in README.md run: Python blocks against a real worker, Go blocks are real code."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from .conftest import ROOT

README = (ROOT / "README.md").read_text()


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, re.S)


def test_readme_python_examples_run(redis_server, worker):
    env = {**os.environ, "GOMAP_REDIS_URL": redis_server.url, "PYTHONPATH": str(ROOT)}
    found = blocks("python")
    assert len(found) >= 4
    for i, code in enumerate(found):
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, f"README python block {i} failed:\n{code}\n{out.stderr}"
        if i == 0:
            assert out.stdout == "[3, 7]\n"  # the first screen's promise


def test_readme_go_lines_are_real_code():
    """Every complete line of the README's Go blocks stands in a compiled example."""
    sources = "\n".join(
        (ROOT / "worker" / p).read_text() for p in ("examples/myworker/main.go", "client/example_test.go")
    )
    code_lines = {line.strip() for line in sources.splitlines()}
    for block in blocks("go"):
        for line in block.splitlines():
            stmt = line.split("  //")[0].strip()
            if stmt and "…" not in stmt:
                assert stmt in code_lines, f"README Go line not in a compiled example: {stmt}"
