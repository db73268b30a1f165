"""Fresh virtualenvs for the tests that install gomap as a user would (tests/test_notebooks.py,
tests/test_wheels.py), and running a notebook in a kernel of one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

PIP_TIMEOUT = 900

RUNNER = """
import sys, nbclient, nbformat
src, dst, cwd, kernel, timeout = sys.argv[1:6]
nb = nbformat.read(src, as_version=4)
client = nbclient.NotebookClient(nb, kernel_name=kernel, timeout=int(timeout), resources={"metadata": {"path": cwd}})
try:
    client.execute()
finally:
    nbformat.write(nb, dst)
"""
"""Runs a notebook with nbclient inside the venv: source, destination, cwd, kernel, cell timeout."""


def make_venv(root: Path, install: Sequence[str]) -> Path:
    """A virtualenv at root with ``install`` pip-installed (pip's cache reused); its bin directory."""
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, timeout=120, capture_output=True)
    pip = subprocess.run(
        [str(root / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", "--quiet", *install],
        capture_output=True,
        text=True,
        timeout=PIP_TIMEOUT,
        check=False,
        env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")},
    )
    assert pip.returncode == 0, f"pip install {' '.join(install)} failed:\n{pip.stdout[-2000:]}{pip.stderr[-3000:]}"
    return root / "bin"


def kernelspec(jupyter: Path, name: str, python: Path) -> None:
    """A kernelspec ``name`` under ``jupyter`` (a JUPYTER_PATH entry) that runs ``python``."""
    spec = jupyter / "kernels" / name
    spec.mkdir(parents=True)
    argv = [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": name, "language": "python"}))


def run_notebook(
    python: Path, src: Path, out_dir: Path, kernel: str, env: Mapping[str, str], *, cell_timeout: int, timeout: float
) -> tuple[list[dict], subprocess.CompletedProcess[str]]:
    """Run the notebook src in ``kernel`` with the venv's ``python``; its outputs (none an error)."""
    import nbformat

    out = out_dir / src.name
    proc = subprocess.run(
        [str(python), "-c", RUNNER, str(src), str(out), str(out_dir), kernel, str(cell_timeout)],
        cwd=out_dir,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert out.exists(), f"{src.name} did not run:\n{proc.stderr[-3000:]}"
    nb = nbformat.read(out, as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    errors = [f"{o['ename']}: {o['evalue']}" for o in outputs if o.get("output_type") == "error"]
    assert not errors, errors
    assert proc.returncode == 0, proc.stderr[-3000:]
    return outputs, proc
