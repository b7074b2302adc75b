"""Notebooks are stored without outputs and run top to bottom."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.subprocess   # run first (tests/conftest.py)

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_without_outputs(path):
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, \
                f"{path.name}: clear the outputs before committing"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path, tmp_path, monkeypatch):
    """Run top to bottom from a folder that holds a clone named ``bmdqct`` (which must not be imported)."""
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("BMDQCT_EXAMPLE_QUICK", "1")
    clone = tmp_path / "bmdqct"                  # a clone's root: no __init__.py, so a namespace package
    (clone / "notebooks").mkdir(parents=True)
    (clone / "README.md").write_text("# bmdqct\n")
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    texts = [str(out.get("text", "")) + str(out.get("data", {}).get("text/plain", ""))
             for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]
    assert not [t for t in texts if "IProgress" in t or "TqdmWarning" in t], f"{path.name}: tqdm widget warning"
    for cell in nb.cells:
        shows_figure = cell.cell_type == "code" and cell.source.rstrip().endswith("\nfig")
        if shows_figure:                         # a Figure as the cell's value is drawn inline, not as text
            assert any("image/png" in out.get("data", {}) for out in cell.outputs), \
                f"{path.name}: the figure of cell {cell.source[:40]!r} is not shown inline"


def test_notebooks_import_the_installed_package():
    """The first code cell keeps the working directory (perhaps the folder holding the clone) off sys.path."""
    import nbformat

    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        first = next(c for c in nb.cells if c.cell_type == "code")
        assert "sys.path[:]" in first.source and "%matplotlib inline" in first.source, path.name
        later = [c for c in nb.cells if c.cell_type == "code" and c is not first]
        code = [line for line in first.source.splitlines() if not line.lstrip().startswith("#")]
        assert not any("bmdqct" in line for line in code), path.name   # nothing imported before the fix
        assert any("bmdqct" in c.source for c in later), path.name


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 3
