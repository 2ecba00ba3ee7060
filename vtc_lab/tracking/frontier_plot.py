"""The legibility frontier figure of `vtc-lab report` (issue 23 §2): accuracy against compression,
one curve per page degradation, 95 % intervals over seeds, and where reading breaks.

A point is a group of runs that are seeds of one setting: the same pages at evaluation (the
`degrade` param: the level the pages were drawn at, the key param of `renderer.degrade.level`;
a `downscale` override adds itself to the label, being the resolution axis), the same
rendering (`RENDER_PARAMS`: what sets the compression) and the same training pages
(`trained_on`: a model trained on degraded pages, augmentation, is another model than its
clean-trained twin and gets curves of its own). Its x is the mean of its runs' measured
compression ratios (which move a little with what the model writes), its y their mean accuracy.
"Reading breaks" where a point's mean accuracy falls below half of the baseline: the text
loop's mean accuracy when the runs include it (the text-memory model), else the best point of
clean-trained models on clean pages. Kept apart from `plots.py` (which draws everything else
and lists this one in its `PLOTS`) so that module stays one page of figures; it imports
nothing from it.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections import defaultdict
from pathlib import Path
from typing import Any, Optional

from vtc_lab.tracking.replicates import TRAIN_DEGRADE

_EVAL = re.compile(r"^eval/([^/]+)/([^/]+)/(.+)$")
_DOWNSCALE_PARAMS = ("eval_degrade.downscale", "renderer.degrade.downscale")
BREAK_FRACTION = 0.5
"""Reading has broken below this fraction of the baseline accuracy."""
RENDER_PARAMS = ("renderer", "font", "font_size", "dpi", "page_width")
"""Params that together set a run's rendering, hence its compression: runs differing in one of
them are different points even when their measured ratios nearly coincide."""
RUN_INFO = "run.json"
"""A training run directory's record (`vtc_lab.models.reading.RUN_INFO`; the tracking layer may
not import models, tests/tracking/test_plots.py keeps the two names equal). Read only for eval
runs logged before they carried `train.degrade`."""


@functools.lru_cache(maxsize=256)
def _recorded_level(run_dir: str) -> Optional[str]:
    try:
        info = json.loads((Path(run_dir) / RUN_INFO).read_text())
    except (OSError, ValueError):
        return None
    reading = info.get("reading") if isinstance(info, dict) else None
    if not isinstance(reading, dict) or not isinstance(reading.get("renderer"), dict):
        return None
    degrade = reading["renderer"].get("degrade")
    # a record from before page degradations existed: the model was trained on clean pages
    return "none" if degrade is None else str(degrade.get("level", "none"))


def trained_on(run: Any) -> str:
    """The degradation level of the pages the evaluated model was trained on: the run's
    `train.degrade` param (`vtc_lab.tracking.replicates`: eval runs of trained models log it);
    for runs logged before that param existed, the reading their training run recorded, read
    back from the run directory the run names (`train_run=<dir>`, or
    `checkpoint=<dir>/checkpoints/<file>`); `unknown` when the run names neither or the record
    is not readable from here."""
    if run.params.get(TRAIN_DEGRADE) not in (None, "", "None"):
        return run.params[TRAIN_DEGRADE]
    run_dir = run.params.get("train_run")
    if run_dir in (None, "", "None"):
        ckpt = run.params.get("checkpoint")
        run_dir = str(Path(ckpt).parent.parent) if ckpt not in (None, "", "None") else None
    level = _recorded_level(str(run_dir)) if run_dir else None
    return level or "unknown"


def pages_label(run: Any) -> str:
    """The page condition a run evaluated on: its `degrade` level, plus a downscale factor."""
    label = run.params["degrade"]
    for name in _DOWNSCALE_PARAMS:
        if run.params.get(name) not in (None, "None") and float(run.params[name]) != 1.0:
            label = f"{label}, downscale {float(run.params[name]):g}"
    return label


def _norm(value: Optional[str]) -> str:
    try:
        return repr(float(value))
    except (TypeError, ValueError):
        return str(value)


def render_setting(run: Any, ratio: float) -> tuple[str, ...]:
    """What sets a run's compression: its `RENDER_PARAMS`, or (none logged) its measured ratio."""
    if not any(k in run.params for k in RENDER_PARAMS):
        return (f"{ratio:.2f}",)
    return tuple(_norm(run.params.get(k)) for k in RENDER_PARAMS)


def frontier_groups(runs: list[Any]) -> tuple[dict[tuple[str, str, tuple[str, ...]], list[tuple[float, float]]],
                                               list[float]]:
    """({(trained on, pages, rendering setting): [(compression ratio, accuracy) per run]}, the
    text loop's accuracies). Only runs with a `degrade` param and a memory loop's accuracy and
    compression ratio make groups."""
    groups: dict[tuple[str, str, tuple[str, ...]], list[tuple[float, float]]] = defaultdict(list)
    text_acc: list[float] = []
    for run in runs:
        by_loop: dict[str, dict[str, float]] = defaultdict(dict)
        for key, value in run.metrics.items():
            m = _EVAL.match(key)
            if m:
                by_loop[m.group(2)][m.group(3)] = value
        if "accuracy" in by_loop.get("text", {}):
            text_acc.append(by_loop["text"]["accuracy"])
        if run.params.get("degrade") is None:
            continue
        for loop, vals in by_loop.items():
            if loop in ("text", "none") or "accuracy" not in vals or not vals.get("compression_ratio"):
                continue
            setting = render_setting(run, vals["compression_ratio"])
            groups[(trained_on(run), pages_label(run), setting)].append(
                (vals["compression_ratio"], vals["accuracy"]))
    return dict(groups), text_acc


def frontier_points(runs: list[Any]) -> tuple[dict[str, list[tuple[float, Any]]], float | None]:
    """({curve label: [(mean compression ratio, Interval of accuracy over runs)] sorted by
    ratio}, baseline accuracy or None). A curve is one page condition; when the runs' models
    were trained on more than one page condition its label adds ` · trained on <level>`."""
    from vtc_lab.eval.stats import mean_ci

    groups, text_acc = frontier_groups(runs)
    several = len({t for t, _, _ in groups}) > 1
    curves: dict[str, list[tuple[float, Any]]] = defaultdict(list)
    clean: list[float] = []
    for (trained, pages, _), pts in groups.items():
        label = f"{pages} · trained on {trained}" if several else pages
        iv = mean_ci([a for _, a in pts])
        curves[label].append((sum(r for r, _ in pts) / len(pts), iv))
        if pages == "none" and trained in ("none", "unknown"):
            clean.append(iv.mean)
    if text_acc:
        baseline = sum(text_acc) / len(text_acc)
    else:
        baseline = max(clean) if clean else None
    return {k: sorted(v, key=lambda t: t[0]) for k, v in curves.items()}, baseline


def plot_legibility_frontier(runs: list[Any], lk: Any) -> Any:
    """Accuracy (%) against compression (×), one curve per page condition with its 95 % band
    over seeds, a colour per page condition; models trained on degraded pages dashed with
    hollow markers; the break line at half the baseline, points below it marked with a cross."""
    curves, baseline = frontier_points(runs)
    if not curves:
        return "no run has a `degrade` param with a memory loop's accuracy and compression_ratio"
    from vtc_lab.tracking.plot_style import PALETTE, figure

    fig, (ax, dots) = figure(1, 2, figsize=(14, 4.8), width_ratios=(1.1, 1))
    pages_of = {label: label.split(" · trained on ")[0] for label in curves}
    trained_of = {label: (label.split(" · trained on ") + ["none"])[1] for label in curves}
    # clean pages first, then the levels (mild < moderate < severe), then the resolution axis
    pages = sorted(set(pages_of.values()), key=lambda c: ("," in c, c.split(",")[0] != "none", c))
    order = sorted(curves, key=lambda c: (trained_of[c] not in ("none", "unknown"),
                                          pages.index(pages_of[c]), trained_of[c]))
    for i, label in enumerate(order):
        pts = curves[label]
        xs = [x for x, _ in pts]
        ys = [100 * iv.mean for _, iv in pts]
        color = PALETTE[pages.index(pages_of[label]) % len(PALETTE)]
        clean = trained_of[label] in ("none", "unknown")
        if len(xs) == 1:  # curves of one compression side by side, not on top of each other
            xs = [xs[0] * (1 + 0.01 * (order.index(label) - len(order) / 2))]
        ax.plot(xs, ys, marker="o" if clean else "D", color=color, ls="-" if clean else "--",
                mfc=color if clean else "white", lw=max(1.0, 3.0 - 0.4 * i), label=label,
                zorder=3 + i)
        lows = [100 * (iv.low if not math.isnan(iv.low) else iv.mean) for _, iv in pts]
        highs = [100 * (iv.high if not math.isnan(iv.high) else iv.mean) for _, iv in pts]
        if len(xs) > 1:
            ax.fill_between(xs, lows, highs, color=color, alpha=0.12, lw=0)
        else:  # a single compression: the interval as an error bar
            ax.errorbar(xs, ys, yerr=[[y - lo for y, lo in zip(ys, lows)],
                                      [hi - y for y, hi in zip(ys, highs)]],
                        color=color, capsize=3, ls="none", lw=1, alpha=0.6, zorder=3 + i)
        if baseline is not None:
            broken = [(x, y) for x, y in zip(xs, ys) if y < 100 * BREAK_FRACTION * baseline]
            if broken:
                ax.scatter(*zip(*broken), marker="x", s=90, color="black", zorder=40)
    if baseline is not None:
        ax.axhline(100 * BREAK_FRACTION * baseline, color="0.4", ls="--", lw=1,
                   label=f"reading breaks (< {BREAK_FRACTION:g} x baseline {100 * baseline:.0f} %)")
    ax.set_xlabel("compression ratio (memory text tokens / vision tokens, ×; mean over the runs)")
    ax.set_ylabel("accuracy (%), mean and 95 % CI over seeds")
    ax.set_ylim(-3, 103)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, title="pages at evaluation", title_fontsize=8, loc="upper left",
              bbox_to_anchor=(1.01, 1.0))
    ax.set_title("Legibility frontier: accuracy vs compression per page condition")
    _seed_panel(dots, runs, pages, baseline)
    return fig


def _seed_panel(ax: Any, runs: list[Any], pages: list[str], baseline: Optional[float]) -> None:
    """Every run's accuracy (one dot per seed) by page condition, one column of dots per
    (compression, training): with three seeds a t-interval says little, the seeds' values show
    what it hides (a seed that scores 1.0 everywhere beside two that break)."""
    from matplotlib.lines import Line2D

    from vtc_lab.tracking.plot_style import PALETTE

    groups, _ = frontier_groups(runs)
    series = sorted({(t, st) for t, _, st in groups}, key=lambda k: (
        k[0] not in ("none", "unknown"), -max(r for (t, _, st), pts in groups.items()
                                              if (t, st) == k for r, _ in pts), k[0]))
    markers = ("o", "s", "^", "v", "P", "X")
    width = 0.8 / max(1, len(series))
    handles = []
    for j, (trained, setting) in enumerate(series):
        clean = trained in ("none", "unknown")
        ratios = [r for (t, _, st), pts in groups.items() if (t, st) == (trained, setting) for r, _ in pts]
        name = f"{sum(ratios) / len(ratios):.2f}x, trained on {trained}"
        marker = markers[j % len(markers)] if clean else "D"
        for (t, p, st), pts in groups.items():
            if (t, st) != (trained, setting):
                continue
            x = pages.index(p) + (j - (len(series) - 1) / 2) * width
            color = PALETTE[pages.index(p) % len(PALETTE)]
            accs = sorted(100 * a for _, a in pts)
            spread = [x + width * 0.3 * (k - (len(accs) - 1) / 2) / max(1, len(accs)) for k in range(len(accs))]
            ax.scatter(spread, accs, marker=marker, s=28, color=color,
                       facecolors=color if clean else "white", zorder=3)
            ax.plot([x - width * 0.4, x + width * 0.4], [sum(accs) / len(accs)] * 2, color="black", lw=1.5)
        handles.append(Line2D([], [], color="0.3", marker=marker, ls="none",
                              mfc="0.3" if clean else "white", label=name))
    if baseline is not None:
        ax.axhline(100 * BREAK_FRACTION * baseline, color="0.4", ls="--", lw=1)
    handles.append(Line2D([], [], color="black", lw=1.5, label="mean over seeds"))
    ax.set_xticks(range(len(pages)), pages, rotation=20, ha="right", fontsize=8)
    ax.set_ylim(-3, 103)
    ax.set_ylabel("accuracy (%), one dot per seed (run)")
    ax.set_xlabel("pages at evaluation")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(handles=handles, fontsize=8, title="models (compression, training pages)",
              title_fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title("Each seed's accuracy per page condition")
