"""The shipped notebooks run top to bottom after the documented notebook install, on the embedded default.

A module fixture makes a fresh virtualenv and installs into it gomap with the one extra that the
README's install section gives for notebooks, plus what Jupyter brings to run a notebook
(ipykernel, nbclient, nbformat), and nothing else. Each notebook then runs in a kernel of that
virtualenv. It is slow (a minute or more, mostly pip, even from its cache, which it reuses:
``$PIP_CACHE_DIR`` or ``~/.cache/pip``), so these tests are marked ``venv``; ``-m "not venv"``
leaves them out.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from ._venv import PIP_TIMEOUT, kernelspec, make_venv, run_notebook
from .conftest import ROOT

nbformat = pytest.importorskip("nbformat")

NOTEBOOKS = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))

JUPYTER = ["ipykernel", "nbclient", "nbformat"]
"""What Jupyter brings to run a notebook, installed beside gomap."""

RUN_TIMEOUT = 600


def notebook_install() -> str:
    """The extra of the README's notebook install line: pip install "gomap[<extra>]"."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Install", 1)[1].split("\n## ", 1)[0]
    found = re.findall(r'^pip install "gomap\[(\w+)\]" +# .*(?:Jupyter|notebook)', section, re.M)
    assert len(found) == 1, "README's install section gives one notebook install line"
    return found[0]


class Venv:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.python = root / "bin" / "python"
        self.jupyter = root / "jupyter"  # JUPYTER_PATH: a kernelspec that runs this venv's Python
        kernelspec(self.jupyter, "gomap-venv", self.python)

    def env(self) -> dict[str, str]:
        """The environment of the kernel: this venv only, no Redis configured (the embedded default)."""
        drop = ("GOMAP_REDIS_URL", "REDIS_URL", "REDIS_PROVIDER", "GOMAP_WORKER_BINARY", "PYTHONPATH", "VIRTUAL_ENV")
        env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("JUPYTER")}
        env["PATH"] = f"{self.root / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        env["PYTHONNOUSERSITE"] = "1"
        env["JUPYTER_PATH"] = str(self.jupyter)
        env["GOMAP_NOTEBOOK_ROWS"] = "20000"  # your-own-function.ipynb's own default is a million rows
        return env

    def run(self, name: str, out_dir: Path) -> list[dict]:
        outputs, _ = run_notebook(
            self.python, ROOT / "notebooks" / name, out_dir, "gomap-venv", self.env(), cell_timeout=300,
            timeout=RUN_TIMEOUT,
        )  # fmt: skip
        return outputs


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Venv]:
    root = tmp_path_factory.mktemp("notebook-venv") / "venv"
    make_venv(root, [f"{ROOT}[{notebook_install()}]", *JUPYTER])
    yield Venv(root)
    shutil.rmtree(root, ignore_errors=True)  # hundreds of MB (numpy, pandas)


def text_of(outputs: list[dict], stream: str | None = None) -> str:
    """Every text the outputs show: streams (only ``stream`` when given) and text/plain."""
    if stream is not None:
        return "".join(o.get("text", "") for o in outputs if o.get("name") == stream)
    return "".join(str(o.get("data", {}).get("text/plain", "")) + o.get("text", "") for o in outputs)


def test_the_notebooks_are_committed_without_outputs_and_time_warm_runs():
    """Each notebook's first timing starts after its first gomap call: the cluster's start (and a
    first build) is not what a timing shows."""
    assert NOTEBOOKS == ["pandas.ipynb", "quickstart.ipynb", "your-own-function.ipynb"]
    for name in NOTEBOOKS:
        nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
        code = [c.source for c in nb.cells if c.cell_type == "code"]
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), f"{name}: commit without outputs"
        source = "\n".join(code)
        if "perf_counter()" in source:
            first_call = re.search(r"\.gomap\.apply\(|\bgomap\(", source)
            assert first_call and first_call.start() < source.index("perf_counter()"), f"{name} times a cold start"


def test_the_notebook_extra_is_what_the_readme_says():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11
    extra = notebook_install()
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extra in extras and any(d.startswith("ipywidgets") for d in extras[extra])


@pytest.mark.venv
@pytest.mark.timeout(PIP_TIMEOUT + RUN_TIMEOUT)
def test_quickstart_notebook(venv, tmp_path):
    outputs = venv.run("quickstart.ipynb", tmp_path)
    # The bar is the widget, not text; when its batch ends, the widget's output becomes the same bar
    # as static HTML and text with the final counts (an update of its display), so the saved
    # notebook shows them: no widget is left in it, whose saved state would read 0 %.
    widgets = [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    finished = [o["data"] for o in outputs if 'class="gomap-progress"' in o.get("data", {}).get("text/html", "")]
    assert finished and not widgets, outputs
    assert any("200,000/200,000" in d["text/html"] and "200,000/200,000" in d["text/plain"] for d in finished)
    assert "%|" not in text_of(outputs, "stderr")
    text = text_of(outputs)
    assert "[3, 7]" in text
    assert "item 1 failed (error): division by zero" in text
    # The start line: plain output, not the stderr box, with no pid and no socket path.
    said = [line for line in text_of(outputs, "stdout").splitlines() if "local cluster" in line]
    assert len(said) == 1, said
    assert re.fullmatch(
        r"gomap: no Redis configured, starting a local cluster… ready in \d+\.\d s: Redis and a Go worker on \d+ "
        r"cores?; it stops when Python exits \(details: gomap.default_client\(\)\)",
        said[0],
    ), said[0]
    assert "local cluster" not in text_of(outputs, "stderr")
    assert "IProgress not found" not in text_of(outputs, "stderr")
    # gomap.default_client() as the last cell's display: its details.
    page = outputs[-1]["data"]["text/html"]
    assert page.startswith("<div><strong>gomap.Client</strong>")
    for shown in ("embedded default", "yes: gomap started this local cluster", "worker binary", "sampleupper"):
        assert shown in page, page


@pytest.mark.venv
@pytest.mark.timeout(PIP_TIMEOUT + RUN_TIMEOUT)
def test_pandas_notebook(venv, tmp_path):
    outputs = venv.run("pandas.ipynb", tmp_path)
    timing = re.search(
        r"df\.gomap\.apply: (\d+\.\d+)s   df\.apply\(axis=1\): (\d+\.\d+)s   (\d+)x faster", text_of(outputs)
    )
    assert timing, text_of(outputs)
    assert float(timing.group(1)) > 0
    tables = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert any("total_cents" in t for t in tables)


@pytest.mark.venv
@pytest.mark.timeout(PIP_TIMEOUT + RUN_TIMEOUT)
def test_your_own_function_notebook(venv, tmp_path):
    outputs = venv.run("your-own-function.ipynb", tmp_path)
    text = text_of(outputs)
    assert "<gomap.Function Haversine(lat1, lon1, lat2, lon2 float64) float64>" in text  # the cell's handle
    assert "20,000 rows: gomap" in text and "faster, equal results" in text
    tables = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert any("Haversine" in t and "sampleadd" in t for t in tables)  # gomap.functions() as a table
