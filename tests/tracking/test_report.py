"""`vtc-lab report` on runs logged into a real sqlite store: table, CSV, plots, errors."""

from __future__ import annotations

import csv
import io

import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from vtc_lab.tracking.report_app import ReportConfig, make_report
from vtc_lab.tracking import TrackingConfig, open_run, prepare
from vtc_lab.tracking.report import ReportInputError
from vtc_lab.tracking.runs import finish_run


def _log_sweep(tmp_path, fail_one=True):
    """A parent + 3 children shaped like eval/train runs of a font-size sweep."""
    cfg = TrackingConfig(experiment="rep")
    uri = prepare(cfg, tmp_path)
    parent = open_run(cfg, uri, run_name="sweep", tags={"vtc.sweep": "true"})
    kids = []
    for i, size in enumerate((7, 9, 12)):
        run = open_run(cfg, uri, run_name=f"renderer.font_size={size}", parent_run_id=parent.run_id)
        run.log_params({"font_size": size, "backbone": "tiny", "output_root": f"/x/{i}"})
        for step, loss in enumerate((3.0, 2.0 - 0.1 * i, 1.5 - 0.1 * i)):
            run.log_metrics({"train/loss": loss}, step=step * 10)
        run.log_metrics({"val/loss": 1.9 - 0.1 * i}, step=20)
        for loop, vis, acc, lat, gen in (("optical", 100.0 * (i + 1), 0.2 + 0.1 * i, 2.0, 300.0),
                                         ("text", 0.0, 0.25, 3.5, 320.0)):
            run.log_metrics({f"eval/math500/{loop}/accuracy": acc,
                             f"eval/math500/{loop}/context_vision_tokens_mean": vis,
                             f"eval/math500/{loop}/compression_ratio": 3.0 - i if loop == "optical" else 0.0,
                             f"eval/math500/{loop}/latency_mean_s": lat + i,
                             f"eval/math500/{loop}/generated_tokens_mean": gen + 10 * i,
                             f"eval/math500/{loop}/rounds_hist/1": 3.0,
                             f"eval/math500/{loop}/rounds_hist/2": 5.0 - i})
        finish_run(run, RuntimeError("x") if (fail_one and i == 2) else None)
        kids.append(run.run_id)
    finish_run(parent)
    return uri, parent.run_id, kids


def test_report_of_a_sweep_writes_table_csv_plots_and_logs_to_parent(tmp_path):
    uri, parent_id, kids = _log_sweep(tmp_path)
    out = tmp_path / "rep"
    cfg = ReportConfig(tracking=TrackingConfig(experiment="rep"), output_root=str(tmp_path),
                       sweep="latest", output_dir=str(out))
    result = make_report(cfg)
    assert result == {"report/runs": 3.0, "report/plots": 4.0, "report/configurations": 3.0,
                      "report/comparisons": 0.0}   # no predictions tables: nothing to pair
    md = (out / "report.md").read_text()
    assert f"sweep `{parent_id}`" in md and "3 runs (2 finished, 1 failed)" in md
    header = next(line for line in md.splitlines() if line.startswith("| run |"))
    assert "font_size" in header and "backbone" not in header   # only what varies
    assert "output_root" not in header                          # never noise
    assert "eval/math500/optical/accuracy" in header
    rows = list(csv.DictReader(io.StringIO((out / "runs.csv").read_text())))
    assert [r["run"] for r in rows] == [f"renderer.font_size={s}" for s in (7, 9, 12)]
    assert [float(r["eval/math500/optical/accuracy"]) for r in rows] == pytest.approx([0.2, 0.3, 0.4])
    assert [r["status"] for r in rows] == ["FINISHED", "FINISHED", "FAILED"]
    for name in ("accuracy_vs_vision_tokens", "latency_vs_reasoning_length", "rounds_histogram",
                 "training_loss"):
        img = Image.open(out / f"{name}.png")
        assert img.size[0] > 500 and img.size[1] > 300
        assert f"![{name}]({name}.png)" in md
    assert "data_compression.png" in md.split("Not plotted:")[1]
    logged = {f.path for f in MlflowClient(uri).list_artifacts(parent_id, "report")}
    assert {"report/report.md", "report/runs.csv", "report/training_loss.png"} <= logged


def test_report_of_a_whole_experiment_skips_parents_and_makes_its_own_run(tmp_path):
    uri, parent_id, kids = _log_sweep(tmp_path, fail_one=False)
    cfg = ReportConfig(tracking=TrackingConfig(experiment="rep"), output_root=str(tmp_path))
    assert make_report(cfg)["report/runs"] == 3.0
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("rep")
    reports = client.search_runs([exp.experiment_id], "tags.`vtc.report` = 'true'")
    assert len(reports) == 1 and reports[0].info.status == "FINISHED"
    # a second report does not count the first one as a run to compare
    assert make_report(cfg)["report/runs"] == 3.0


def test_unknown_experiment_and_sweep_are_clear_errors(tmp_path):
    _log_sweep(tmp_path)
    with pytest.raises(ReportInputError, match=r"experiment 'nope' not found.*known experiments: .*rep"):
        make_report(ReportConfig(tracking=TrackingConfig(experiment="nope"),
                                 output_root=str(tmp_path)))
    with pytest.raises(ReportInputError, match="sweep run 'abc123' not found"):
        make_report(ReportConfig(tracking=TrackingConfig(experiment="rep"),
                                 output_root=str(tmp_path), sweep="abc123"))
    with pytest.raises(ValueError, match="sweep must be a run id"):
        ReportConfig(sweep="../x")
    with pytest.raises(ValueError, match="tracking.mode=off"):
        ReportConfig(tracking=TrackingConfig(mode="off"))
    assert not (tmp_path / "reports").exists()   # nothing half-written


def test_report_plots_the_loop_latency_benchmark(tmp_path):
    """Runs shaped like experiments/perf/loop_latency.py's points get the speedup plot."""
    cfg = TrackingConfig(experiment="perf")
    uri = prepare(cfg, tmp_path)
    for total in (1024, 2048):
        for reuse in (True, False):
            run = open_run(cfg, uri, run_name=f"T={total} reuse={reuse}")
            run.log_params({"bench.model": "qwen3_vl", "bench.total_tokens": total,
                            "bench.round_tokens": 512, "bench.reuse": reuse})
            run.log_metrics({"perf/speedup": total / 1500 + 0.1 * reuse, "perf/optical/decode_s": 5.0,
                             "perf/optical/vision_s": 0.5, "perf/optical/render_s": 0.01})
            finish_run(run)
    out = tmp_path / "rep"
    make_report(ReportConfig(tracking=cfg, output_root=str(tmp_path), output_dir=str(out)))
    img = Image.open(out / "loop_speedup_vs_length.png")
    assert img.size[0] > 800 and img.size[1] > 300
    assert "![loop_speedup_vs_length](loop_speedup_vs_length.png)" in (out / "report.md").read_text()
