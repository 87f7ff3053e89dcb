"""The notebooks in notebooks/ are committed without outputs and run top to bottom.

Running them needs nbclient, nbformat and ipykernel (``pip install '.[test]'``); without
them that test is skipped. The kernel imports the pyalloc under test (its directory is put
first on the kernel's PYTHONPATH)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import pyalloc

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_without_outputs(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    code = [cell for cell in nb["cells"] if cell["cell_type"] == "code"]
    assert code
    for cell in code:
        source = "".join(cell["source"])
        assert cell["outputs"] == [], f"outputs committed in cell: {source[:60]!r}"
        assert cell["execution_count"] is None, f"execution count in cell: {source[:60]!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_top_to_bottom(path, monkeypatch):
    # jupyter_core warns (a DeprecationWarning, an error here) unless told which paths to use
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    pytest.importorskip("ipykernel")
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    root = str(Path(pyalloc.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [root, os.environ.get("PYTHONPATH")])), MPLBACKEND="Agg")
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})
    client.execute(env=env)  # raises CellExecutionError on the first failing cell
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        assert not [o for o in cell.outputs if o.output_type == "error"]
        last_line = cell.source.strip().splitlines()[-1]
        if last_line.startswith("viz."):  # a picture cell shows a picture
            assert any("image/png" in o.get("data", {}) for o in cell.outputs), cell.source
