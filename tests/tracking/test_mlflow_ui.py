"""The toy sweep in the MLflow UI, in a real headless browser (Debian's chromium through
Playwright): the runs table opens (not the GenAI overview) with rows `optical` / `text` and the
headline metric column, and one chart holds both models' `eval/toy/memory/accuracy`.
The work is experiments/ui/mlflow_ui_check.py (which also saves the docs' screenshots)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

_SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "ui" / "mlflow_ui_check.py"


def _check_module():
    spec = importlib.util.spec_from_file_location("mlflow_ui_check", _SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_toy_sweep_reads_as_a_comparison_in_the_mlflow_ui(tmp_path):
    ui = _check_module()
    if not Path(ui.CHROMIUM).is_file():
        pytest.skip(f"no chromium at {ui.CHROMIUM} (Debian: apt-get install chromium)")
    pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    ui.build_sweep(tmp_path)
    with ui.mlflow_server(tmp_path) as base:
        found = ui.check(ui.sweep_link(tmp_path, base))
    assert found["run_names"] == ["optical", "text"]
    assert any(ui.METRIC in c for c in found["columns"])
    assert found["charts"] >= 1 and found["chart_legend"]  # one chart naming both runs
