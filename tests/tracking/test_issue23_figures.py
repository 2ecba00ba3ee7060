"""Issue 23's report figures on runs shaped like the measured ones: the legibility frontier
with clean-trained and augmented models side by side, accuracy by the round of the first
misread, and the render crossover logged by experiments/perf/render_crossover.py into a real
MLflow store."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import matplotlib
import numpy as np
import pytest

from vtc_lab.tracking.plots import PALETTE, figures
from vtc_lab.tracking.report import RunRecord

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

# accuracy per (model kind, pages), seeds 0, 1, 2: the frontier store's values
CLEAN_225 = {"none": (1.0, 1.0, 1.0), "moderate": (0.23, 0.14, 1.0), "severe": (0.23, 0.16, 1.0)}
CLEAN_1125 = {"none": (1.0, 0.81, 0.93), "moderate": (0.95, 0.49, 0.82)}
AUG_225 = {"none": (1.0, 0.99, 1.0), "moderate": (1.0, 1.0, 1.0), "severe": (0.15, 0.09, 0.39)}


def _train_run(root: Path, name: str, degrade) -> str:
    """A training run directory whose run.json records the pages the model read (as
    `vtc-lab train` writes it; older runs record no `degrade`)."""
    run = root / name
    run.mkdir(parents=True)
    renderer = {"font": "DejaVuSansMono", "font_size": 12.0}
    if degrade is not None:
        renderer["degrade"] = {"level": degrade, "seed": 0}
    (run / "run.json").write_text(json.dumps({"memory": "optical", "reading": {"renderer": renderer}}))
    return str(run)


def frontier_store_runs(root: Path) -> list[RunRecord]:
    """Eval runs as the frontier store holds them: every run logs `seed=0` (the eval seed) and
    the same config tag; the model seed is only in which training run it evaluates. Augmented
    models log their memory loop as `memory`, the older runs as `optical`; one run's measured
    ratio is off the nominal 2.25x (the model wrote fewer tokens)."""
    runs = []
    kinds = (("c2.25", CLEAN_225, 64.0, None, "optical", 2.25),
             ("c1.125", CLEAN_1125, 128.0, None, "optical", 1.125),
             ("aug", AUG_225, 64.0, "moderate", "memory", 2.25))
    for kind, table, width, trained, loop, ratio in kinds:
        for seed in range(3):
            run_dir = _train_run(root, f"{kind}/{seed}", trained)
            for pages, accs in table.items():
                params = {"degrade": pages, "seed": "0", "page_width": str(width),
                          "font_size": "12.0", "font": "DejaVuSansMono", "dpi": "72"}
                if kind == "c1.125":  # evaluated from a checkpoint with a renderer preset
                    params.update(checkpoint=f"{run_dir}/checkpoints/last.ckpt",
                                  renderer="toy_task_wide", train_run="None")
                else:
                    params.update(train_run=run_dir, checkpoint="None")
                r = 2.2165 if (kind, seed, pages) == ("c2.25", 0, "severe") else ratio
                runs.append(RunRecord(
                    run_id=f"{kind}-{seed}-{pages}", name=f"{kind}-s{seed}-{pages}",
                    status="FINISHED", params=params, tags={"vtc.config_key": "default", "vtc.seed": "0"},
                    metrics={f"eval/toy/{loop}/accuracy": accs[seed],
                             f"eval/toy/{loop}/compression_ratio": r}))
    return runs


def test_run_info_name_is_the_models_one():
    from vtc_lab.models.reading import RUN_INFO
    from vtc_lab.tracking import frontier_plot

    assert frontier_plot.RUN_INFO == RUN_INFO


def test_frontier_keeps_augmented_models_off_the_clean_trained_curves(tmp_path):
    from vtc_lab.tracking.frontier_plot import frontier_points

    curves, baseline = frontier_points(frontier_store_runs(tmp_path))
    assert baseline == pytest.approx(1.0)  # the best clean-trained point on clean pages
    assert sorted(curves) == sorted(
        [f"{p} · trained on none" for p in ("none", "moderate", "severe")]
        + [f"{p} · trained on moderate" for p in ("none", "moderate", "severe")])
    # clean-trained, moderate pages: the 1.125x point and the 2.25x point, seeds only of them
    (x1, lo), (x2, hi) = curves["moderate · trained on none"]
    assert (x1, x2) == (pytest.approx(1.125), pytest.approx(2.25))
    assert (lo.mean, lo.n) == (pytest.approx(np.mean(CLEAN_1125["moderate"])), 3)
    assert (hi.mean, hi.n) == (pytest.approx(np.mean(CLEAN_225["moderate"])), 3)
    # the run whose measured ratio is 2.2165 is still a seed of the 2.25x severe point
    [(x, sev)] = curves["severe · trained on none"]
    assert sev.n == 3 and x == pytest.approx((2.2165 + 2 * 2.25) / 3)
    assert sev.mean == pytest.approx(np.mean(CLEAN_225["severe"]))
    [(_, aug)] = curves["moderate · trained on moderate"]
    assert (aug.mean, aug.n, aug.low, aug.high) == (1.0, 3, 1.0, 1.0)
    fig = figures(frontier_store_runs(tmp_path / "again"))["legibility_frontier.png"]
    try:
        lines = {ln.get_label(): ln for ln in fig.axes[0].get_lines()}
        assert list(lines["moderate · trained on none"].get_ydata()) == pytest.approx([75.33333, 45.66667])
        assert lines["severe · trained on moderate"].get_linestyle() == "--"
        # the seeds panel: one dot per run, all 24 of them
        dots = [xy for c in fig.axes[1].collections for xy in c.get_offsets()]
        assert len(dots) == 24
    finally:
        plt.close("all")


def test_frontier_without_a_readable_training_record_says_unknown(tmp_path):
    from vtc_lab.tracking.frontier_plot import trained_on

    run = RunRecord("a", "a", "FINISHED", params={"degrade": "none", "train_run": str(tmp_path / "gone")})
    assert trained_on(run) == "unknown"
    old = _train_run(tmp_path, "old", None)  # recorded before degradations existed: clean pages
    assert trained_on(RunRecord("b", "b", "FINISHED", params={"train_run": old})) == "none"


MISREAD = {  # (kind, pages) -> per seed {bucket: (accuracy, samples)}
    ("c2.25", "moderate"): ({"round_2": (0.2323, 99), "round_3": (0.0, 1)},
                            {"round_2": (0.1026, 78), "round_3": (0.3158, 19), "round_4": (0.0, 3)},
                            {"none": (1.0, 100)}),
    ("c2.25", "none"): ({"none": (1.0, 200)}, {"none": (1.0, 200)}, {"none": (1.0, 200)}),
    ("aug", "moderate"): ({"none": (1.0, 100)}, {"none": (1.0, 100)}, {"none": (1.0, 100)}),
}


def misread_runs(root: Path) -> list[RunRecord]:
    runs = []
    for (kind, pages), seeds in MISREAD.items():
        for seed, buckets in enumerate(seeds):
            run_dir = _train_run(root, f"{kind}/{seed}-{pages}", "moderate" if kind == "aug" else None)
            loop = "memory" if kind == "aug" else "optical"
            metrics = {f"eval/toy/{loop}/accuracy": 0.5, f"eval/toy/{loop}/compression_ratio": 2.25}
            for b, (a, n) in buckets.items():
                metrics[f"eval/toy/{loop}/acc_by_first_misread/{b}"] = a
                metrics[f"eval/toy/{loop}/first_misread/{b}"] = float(n)
            runs.append(RunRecord(f"{kind}{seed}{pages}", "r", "FINISHED", metrics=metrics,
                                  params={"degrade": pages, "train_run": run_dir, "page_width": "64.0"}))
    # a run outside the frontier (no degrade): its own panel, by benchmark
    runs.append(RunRecord("plain", "p", "FINISHED", params={"memory": "optical"},
                          metrics={"eval/toy/memory/acc_by_first_misread/none": 0.9,
                                   "eval/toy/memory/first_misread/none": 10.0}))
    return runs


def test_accuracy_by_first_misread_groups_seeds_per_model_and_pages(tmp_path):
    from vtc_lab.tracking.misread_plot import misread_series

    runs = misread_runs(tmp_path)
    panels = misread_series(runs, {"plain": "memory=optical"})
    assert set(panels) == {"2.25x, trained on none", "2.25x, trained on moderate", "toy"}
    clean = panels["2.25x, trained on none"]
    assert set(clean) == {"moderate", "none"}
    iv, n = clean["moderate"]["round_2"]  # two seeds misread first in round 2: an interval
    assert (iv.n, n) == (2, 99 + 78) and iv.mean == pytest.approx((0.2323 + 0.1026) / 2)
    assert iv.low < iv.mean < iv.high
    iv, n = clean["moderate"]["round_4"]  # one seed: no interval
    assert (iv.n, n) == (1, 3) and math.isnan(iv.low)
    iv, n = clean["moderate"]["none"]
    assert (iv.mean, iv.n, n) == (1.0, 1, 100)
    assert clean["none"]["none"][1] == 600
    # the augmented models never misread moderate pages: not mixed into the clean-trained panel
    assert panels["2.25x, trained on moderate"]["moderate"]["none"][1] == 300
    assert panels["toy"]["memory=optical · memory"]["none"][0].mean == pytest.approx(0.9)
    fig = figures(runs)["accuracy_by_first_misread.png"]
    try:
        titles = [ax.get_title() for ax in fig.axes]
        ax = fig.axes[titles.index("2.25x, trained on none")]
        ys = sorted(list(ln.get_ydata()) for ln in ax.get_lines() if len(ln.get_ydata()) > 1)
        assert ys[0] == pytest.approx([100.0, 100 * (0.2323 + 0.1026) / 2, 100 * (0.0 + 0.3158) / 2, 0.0])
        assert [t.get_text() for t in ax.get_xticklabels()] == ["never", "round 2", "round 3", "round 4"]
        counts = {t.get_text() for t in ax.texts}
        assert {"177", "20", "3", "100", "600"} <= counts  # samples behind each point
    finally:
        plt.close("all")


def _script():
    path = ROOT / "experiments" / "perf" / "render_crossover.py"
    spec = importlib.util.spec_from_file_location("render_crossover_for_test", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("render_crossover_for_test", module)
    spec.loader.exec_module(module)
    return module


def test_render_crossover_logged_to_mlflow_and_drawn_by_the_report(tmp_path):
    """The script's logging into a real sqlite store, read back as `vtc-lab report` reads it:
    the figure's means and intervals are the repeats' and the crossover is where the mean
    difference changes sign."""
    from argparse import Namespace

    from vtc_lab.eval.stats import mean_ci
    from vtc_lab.tracking.crossover_plot import crossover
    from vtc_lab.tracking.report import collect_runs

    script = _script()
    deltas = {8: [0.30, 0.20, 0.25], 32: [0.10, 0.12, 0.08], 128: [-0.20, -0.10, -0.15]}
    sweep = {s: {"runs": {"text": [{"latency_s": 1.0 + s / 100} for _ in d],
                          "optical": [{"latency_s": 1.0 + s / 100 + x} for x in d]},
                 "deltas": d, "work_deltas": [x / 2 for x in d]} for s, d in deltas.items()}
    pred = {("Qwen3-VL-8B", "eager"): [(8, 0.5), (1024, -0.5)]}
    args = Namespace(tracking="local", output_root=str(tmp_path), rounds=4, repeats=3, threads=1,
                     predict_rounds=8)
    ids = script.log_to_mlflow(args, "tiny_qwen3_vl", sweep, pred, 0.004, 0.01)
    assert len(ids) == 4
    runs, _, _ = collect_runs(f"sqlite:///{tmp_path}/mlflow.db", script.EXPERIMENT)
    assert len(runs) == 4
    fig = figures(runs)["render_crossover.png"]
    try:
        ax = fig.axes[0]
        [end] = [ln for ln in ax.get_lines() if ln.get_linestyle() == "-" and len(ln.get_xdata()) == 3]
        assert list(end.get_xdata()) == [8, 32, 128]
        assert list(end.get_ydata()) == pytest.approx([np.mean(deltas[s]) for s in (8, 32, 128)])
        band = ax.collections[0].get_paths()[0].vertices[:, 1]
        iv = mean_ci(deltas[8])
        assert min(band) == pytest.approx(min(iv.low, mean_ci(deltas[128]).low))
        s_star = crossover([(s, np.mean(d)) for s, d in deltas.items()])
        assert 32 < s_star < 128
        assert any(ln.get_xdata()[0] == pytest.approx(s_star) for ln in ax.get_lines()
                   if ln.get_linestyle() == ":")
        assert [ln.get_label() for ln in fig.axes[2].get_lines() if not ln.get_label().startswith("_")] \
            == ["Qwen3-VL-8B: eager"]
    finally:
        plt.close("all")
