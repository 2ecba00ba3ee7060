"""The report's figures as matplotlib objects: legend texts, one colour per configuration in
every figure, accuracy and read rate on separate axes, loss on a log scale."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
from matplotlib.colors import to_hex
from PIL import Image

from vtc_lab.tracking.plots import PALETTE, figures, make_plots
from vtc_lab.tracking.report import RunRecord

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

STEPS = (10, 20, 30)


def acc(memory, loop, seed, step):
    base = 0.3 if memory == "optical" else 0.2
    return base + 0.01 * step + 0.02 * seed + (0.0 if loop == "memory" else -0.1)


def read(memory, seed, step):
    return 0.5 + 0.01 * step + (0.05 * seed if memory == "optical" else 0.0)


def toy_sweep(tagged=True):
    """Runs shaped like the toy sweep: optical- and text-memory models x 3 seeds, each
    evaluated with its own memory loop and without memory."""
    runs = []
    for k, memory in enumerate(("optical", "text")):
        for seed in range(3):
            # as the toy sweep logs them: the swept override, its key param, and the loops it implies
            params = {"memory": memory, "optim.memory": memory, "seed": str(seed),
                      "loops": f"['{memory}', 'none']",
                      "backbone": "tiny", "output_root": f"/o/{memory}{seed}"}
            tags = {"vtc.config_key": f"memory={memory}", "vtc.seed": str(seed)} if tagged else {}
            r = RunRecord(f"{memory}{seed}", f"{memory}-s{seed}", "FINISHED", params=params,
                          tags=tags, start_time=10 * k + seed)
            r.curves["train/samples_seen"] = [(s, 8.0 * s) for s in STEPS]
            r.curves["train/loss"] = [(s, 3.0 / (1 + s + seed)) for s in STEPS]
            r.curves["val/loss"] = [(s, 3.5 / (1 + s)) for s in STEPS]
            for loop in ("memory", "none"):
                r.curves[f"eval/toy/{loop}/accuracy"] = [(s, acc(memory, loop, seed, s)) for s in STEPS]
                r.curves[f"eval/toy/{loop}/read_rate"] = [(s, read(memory, seed, s)) for s in STEPS]
                r.metrics.update({f"eval/toy/{loop}/accuracy": acc(memory, loop, seed, 30),
                                  f"eval/toy/{loop}/read_rate": read(memory, seed, 30),
                                  f"eval/toy/{loop}/context_vision_tokens_mean":
                                      100.0 if memory == "optical" and loop == "memory" else 0.0,
                                  f"eval/toy/{loop}/compression_ratio": 2.5 if memory == "optical" else 0.0,
                                  f"eval/toy/{loop}/latency_mean_s": 1.0 + seed,
                                  f"eval/toy/{loop}/generated_tokens_mean": 100.0 + seed,
                                  f"eval/toy/{loop}/rounds_hist/1": 2.0, f"eval/toy/{loop}/rounds_hist/2": 1.0})
            r.metrics["train/loss"] = r.curves["train/loss"][-1][1]
            runs.append(r)
    return runs


def _legend_texts(fig):
    return [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]


def _legend_colors(fig):
    out = {}
    for ax in fig.axes:
        leg = ax.get_legend()
        if leg:
            for handle, text in zip(leg.legend_handles, leg.get_texts()):
                if text.get_text().startswith("memory="):
                    color = handle.get_color() if hasattr(handle, "get_color") else handle.get_facecolor()
                    out[text.get_text()] = to_hex(color)
    return out


@pytest.fixture
def figs():
    drawn = figures(toy_sweep())
    yield drawn
    plt.close("all")


def test_legends_name_only_the_swept_values_and_loops(figs):
    configs = {"memory=optical", "memory=text"}
    loops = {"loop: memory", "loop: none"}
    assert set(_legend_texts(figs["accuracy_vs_samples.png"])) == configs | loops
    assert set(_legend_texts(figs["accuracy_vs_vision_tokens.png"])) == configs | loops
    assert set(_legend_texts(figs["latency_vs_reasoning_length.png"])) == configs | loops
    assert set(_legend_texts(figs["training_loss.png"])) == configs | {"train", "validation"}
    assert set(_legend_texts(figs["rounds_histogram.png"])) == {
        f"memory={m} · loop: {lp}" for m in ("optical", "text") for lp in ("memory", "none")}
    for fig in figs.values():
        if not isinstance(fig, str):
            assert not any("loops=" in t or "seed" in t for t in _legend_texts(fig))


def test_one_colour_per_configuration_in_every_figure(figs):
    want = {"memory=optical": PALETTE[0], "memory=text": PALETTE[1]}
    drawn = [f for f in figs.values() if not isinstance(f, str)]
    assert len(drawn) == 5
    for fig in drawn:
        if fig is figs["rounds_histogram.png"]:
            colors = {c.get_label(): {to_hex(p.get_facecolor()) for p in c.patches}
                      for c in fig.axes[0].containers}
            assert colors == {f"{cfg} · loop: {lp}": {color} for cfg, color in want.items()
                              for lp in ("memory", "none")}
            continue
        assert _legend_colors(fig) == want
    # the artists themselves: each loss line has its run's configuration colour
    lines = figs["training_loss.png"].axes[0].get_lines()
    assert {to_hex(ln.get_color()) for ln in lines} == set(want.values())
    assert len(lines) == 12     # 6 runs x (train, validation)


def test_learning_curve_is_the_mean_over_seeds_with_a_band_on_separate_axes(figs):
    fig = figs["accuracy_vs_samples.png"]
    acc_ax, read_ax = fig.axes[:2]
    assert "accuracy" in acc_ax.get_ylabel() and "read rate" in read_ax.get_ylabel()
    x = [8.0 * s for s in STEPS]
    for ax, value in ((acc_ax, lambda m, lp, seed, s: acc(m, lp, seed, s)),
                      (read_ax, lambda m, lp, seed, s: read(m, seed, s))):
        got = {(to_hex(ln.get_color()), ln.get_linestyle()): list(ln.get_ydata()) for ln in ax.get_lines()}
        for k, memory in enumerate(("optical", "text")):
            for loop, ls in (("memory", "-"), ("none", "--")):
                mean = [100 * np.mean([value(memory, loop, seed, s) for seed in range(3)]) for s in STEPS]
                assert got[(PALETTE[k], ls)] == pytest.approx(mean)
        assert all(list(ln.get_xdata()) == x for ln in ax.get_lines())
        assert len(ax.collections) == 4   # a CI band per configuration and loop
    # only accuracy lines on the accuracy axis: its values never read-rate values
    assert max(max(ln.get_ydata()) for ln in acc_ax.get_lines()) < 70


def test_loss_on_log_scale_and_saved_files_uncut(tmp_path):
    runs = toy_sweep()
    fig = figures(runs)["training_loss.png"]
    assert fig.axes[0].get_yscale() == "log"
    plt.close("all")
    written, skipped = make_plots(runs, tmp_path)
    assert {p.name for p in written} == {"accuracy_vs_samples.png", "accuracy_vs_vision_tokens.png",
                                         "latency_vs_reasoning_length.png", "rounds_histogram.png",
                                         "training_loss.png"}
    assert set(skipped) == {"data_compression.png", "loop_speedup_vs_length.png",
                            "accuracy_vs_problem_length.png", "legibility_frontier.png",
                            "accuracy_by_first_misread.png", "render_crossover.png"}
    # the legend sits beside the axes: the tight box widens the image past the 8-inch figure
    assert Image.open(tmp_path / "training_loss.png").size[0] > 8 * 110


def test_runs_without_tags_get_the_same_legends_and_colours():
    drawn = figures(toy_sweep(tagged=False))
    try:
        assert set(_legend_texts(drawn["accuracy_vs_samples.png"])) == {
            "memory=optical", "memory=text", "loop: memory", "loop: none"}
        assert _legend_colors(drawn["training_loss.png"]) == {"memory=optical": PALETTE[0],
                                                             "memory=text": PALETTE[1]}
    finally:
        plt.close("all")


def test_the_no_memory_loop_always_gets_the_last_line_style():
    from vtc_lab.tracking.plots import look

    runs = [RunRecord("a", "a", "FINISHED", metrics={"eval/t/none/accuracy": 0.1,
                                                     "eval/t/optical/accuracy": 0.2,
                                                     "eval/t/text/accuracy": 0.3})]
    assert look(runs).loop_styles == {"optical": "-", "text": "--", "none": ":"}


def by_length(memory, loop, seed, lo):
    """A made-up accuracy that falls with length, faster for text memory."""
    slope = 0.02 if memory == "optical" else 0.04
    return max(0.0, 1.0 - slope * lo - 0.01 * seed - (0.0 if loop == "memory" else 0.5))


def test_accuracy_vs_length_is_the_last_evaluations_mean_over_seeds_with_a_band():
    runs = toy_sweep()
    buckets = ((5, 9), (10, 14), (15, 19), (20, 24))
    for r in runs:
        memory, seed = r.params["memory"], int(r.params["seed"])
        for loop in ("memory", "none"):
            for lo, hi in buckets:
                key = f"eval/toy_long/{loop}/accuracy_len_{lo:02d}-{hi:02d}"
                # an earlier evaluation with other values: only the last step is drawn
                r.curves[key] = [(10, 0.0), (30, by_length(memory, loop, seed, lo))]
                r.metrics[key] = by_length(memory, loop, seed, lo)
    try:
        fig = figures(runs)["accuracy_vs_problem_length.png"]
        ax = fig.axes[0]
        got = {(to_hex(ln.get_color()), ln.get_linestyle()): ln for ln in ax.get_lines()}
        assert len(got) == 4
        for k, memory in enumerate(("optical", "text")):
            for loop, ls in (("memory", "-"), ("none", "--")):
                line = got[(PALETTE[k], ls)]
                assert list(line.get_xdata()) == [(lo + hi) / 2 for lo, hi in buckets]
                assert list(line.get_ydata()) == pytest.approx(
                    [np.mean([by_length(memory, loop, s, lo) for s in range(3)]) for lo, _ in buckets])
        assert len(ax.collections) == 4  # a band per configuration and loop (3 seeds each)
        assert set(_legend_texts(fig)) == {"memory=optical", "memory=text", "loop: memory",
                                           "loop: none"}
    finally:
        plt.close("all")
def frontier_runs():
    """Runs shaped like experiment=toy_frontier_eval: 2 compressions x 2 degradations x 3 seeds
    (+ one downscaled point), each run one optical loop, and the text-memory models' runs."""
    acc = {("none", 1.125): (1.0, 1.0, 1.0), ("none", 2.25): (1.0, 0.98, 0.96),
           ("severe", 1.125): (0.9, 0.8, 0.7), ("severe", 2.25): (0.1, 0.2, 0.3)}
    runs = []
    for (level, ratio), values in acc.items():
        for seed, a in enumerate(values):
            runs.append(RunRecord(
                run_id=f"{level}{ratio}{seed}", name="r", status="FINISHED",
                params={"degrade": level, "seed": str(seed)},
                metrics={"eval/toy/optical/accuracy": a, "eval/toy/optical/compression_ratio": ratio}))
    runs.append(RunRecord(run_id="down", name="r", status="FINISHED",
                          params={"degrade": "none", "eval_degrade.downscale": "0.5"},
                          metrics={"eval/toy/optical/accuracy": 0.4,
                                   "eval/toy/optical/compression_ratio": 2.25}))
    for seed in range(2):
        runs.append(RunRecord(run_id=f"text{seed}", name="t", status="FINISHED",
                              params={"memory": "text"},
                              metrics={"eval/toy/text/accuracy": 0.9}))
    return runs


def test_legibility_frontier_curves_bands_and_break_point():
    from vtc_lab.tracking.frontier_plot import frontier_points

    curves, baseline = frontier_points(frontier_runs())
    assert baseline == pytest.approx(0.9)  # the text loop's mean, not the best optical point
    assert sorted(curves) == ["none", "none, downscale 0.5", "severe"]
    (x1, lo), (x2, hi) = curves["severe"]
    assert (x1, x2) == (1.125, 2.25) and lo.mean == pytest.approx(0.8) and lo.n == 3
    assert hi.mean == pytest.approx(0.2) and hi.low < 0.2 < hi.high  # a 95 % t-interval
    fig = figures(frontier_runs())["legibility_frontier.png"]
    ax = fig.axes[0]
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert list(lines["severe"].get_ydata()) == pytest.approx([80.0, 20.0])
    assert list(lines["none"].get_ydata()) == pytest.approx([100.0, 98.0])
    # the break line at half the baseline; crosses exactly on the points below it
    assert lines[next(k for k in lines if k.startswith("reading breaks"))].get_ydata()[0] == pytest.approx(45.0)
    from matplotlib.collections import PathCollection

    crosses = sorted(tuple(xy) for c in ax.collections if isinstance(c, PathCollection)
                     for xy in c.get_offsets())
    # (the one-point downscale curve sits a little aside of 2.25, not on top of the others)
    assert crosses == [pytest.approx((2.25, 20.0)), pytest.approx((2.25, 40.0), rel=0.02)]
    plt.close(fig)
    assert isinstance(figures(toy_sweep())["legibility_frontier.png"], str)  # no degrade: why not
