"""Every script in examples/ runs headless, from a scratch folder."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.py"))


@pytest.mark.slow
@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(script, tmp_path, monkeypatch, close_figures):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("BMDQCT_EXAMPLE_QUICK", "1")
    monkeypatch.setattr(sys, "argv", [str(script)])
    runpy.run_path(str(script), run_name="__main__")
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written, f"{script.name} wrote nothing into its working folder"


def test_there_are_examples():
    assert len(EXAMPLES) >= 3
