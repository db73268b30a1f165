"""The notebooks run top to bottom on a real ipykernel, on the embedded default."""

from __future__ import annotations

import pytest

from .conftest import ROOT

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")


def run_notebook(name: str, tmp_path, monkeypatch) -> list[dict]:
    # The kernel inherits this environment: no Redis configured, so gomap starts its embedded default.
    for var in ("GOMAP_REDIS_URL", "REDIS_URL", "REDIS_PROVIDER"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit notebooks without outputs"
    client = nbclient.NotebookClient(
        nb, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    errors = [o for o in outputs if o.get("output_type") == "error"]
    assert not errors, [f"{e['ename']}: {e['evalue']}" for e in errors]
    return outputs


def test_quickstart_notebook_shows_a_progress_widget(tmp_path, monkeypatch):
    outputs = run_notebook("quickstart.ipynb", tmp_path, monkeypatch)
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs)
    text = "".join(str(o.get("data", {}).get("text/plain", "")) + o.get("text", "") for o in outputs)
    assert "[3, 7]" in text
    assert "item 1 failed (error): division by zero" in text
    assert "started a local cluster" in text  # the one line the embedded default prints


def test_pandas_notebook(tmp_path, monkeypatch):
    outputs = run_notebook("pandas.ipynb", tmp_path, monkeypatch)
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the plot
    assert any("faster" in o.get("text", "") for o in outputs)


def test_your_own_function_notebook(tmp_path, monkeypatch):
    monkeypatch.setenv("GOMAP_NOTEBOOK_ROWS", "20000")  # the notebook's own default is a million rows
    outputs = run_notebook("your-own-function.ipynb", tmp_path, monkeypatch)
    text = "".join(str(o.get("data", {}).get("text/plain", "")) + o.get("text", "") for o in outputs)
    assert "<gomap.Function Haversine(lat1, lon1, lat2, lon2 float64) float64>" in text  # the cell's handle
    assert "20,000 rows: gomap" in text and "faster, equal results" in text
    tables = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert any("Haversine" in t and "sampleadd" in t for t in tables)  # gomap.functions() as a table
