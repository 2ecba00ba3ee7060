"""Fixtures for the renderer tests: the MATH500 solutions and the reference pipeline module."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
MATH500 = REPO / "vtc_lab" / "eval" / "benchmarks_data" / "math500.jsonl"


@pytest.fixture(scope="session")
def solutions() -> list[str]:
    with MATH500.open() as fh:
        return [json.loads(line)["solution"] for line in fh]


@pytest.fixture(scope="session")
def reference() -> ModuleType:
    """experiments/perf/render_reference.py (reportlab -> PDF -> PNG), skipped without reportlab."""
    pytest.importorskip("reportlab")
    path = REPO / "experiments" / "perf" / "render_reference.py"
    spec = importlib.util.spec_from_file_location("render_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def raster_engine() -> str:
    """A PDF rasteriser for the reference: poppler's pdftoppm, else pypdfium2, else skip."""
    if shutil.which("pdftoppm"):
        return "pdftoppm"
    if importlib.util.find_spec("pypdfium2"):
        return "pdfium"
    pytest.skip("no PDF rasteriser (apt-get install poppler-utils, or pip install pypdfium2)")
