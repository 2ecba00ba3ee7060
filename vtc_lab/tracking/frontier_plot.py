"""The legibility frontier figure of `vtc-lab report` (issue 23 §2): accuracy against compression,
one curve per page degradation, 95 % intervals over seeds, and where reading breaks.

Runs are grouped by their `degrade` param (the level their pages were drawn at: the key param of
`renderer.degrade.level`; a `downscale` override adds itself to the label, being the resolution
axis) and by their memory loop's compression ratio; runs of one group are seeds of one point.
"Reading breaks" where a point's mean accuracy falls below half of the baseline: the text
loop's mean accuracy when the runs include it (the text-memory model), else the best clean
(`degrade=none`) point. Kept apart from `plots.py` (which draws everything else and lists
this one in its `PLOTS`) so that module stays one page of figures; it imports nothing from it.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from typing import Any

_EVAL = re.compile(r"^eval/([^/]+)/([^/]+)/(.+)$")
_DOWNSCALE_PARAMS = ("eval_degrade.downscale", "renderer.degrade.downscale")
BREAK_FRACTION = 0.5
"""Reading has broken below this fraction of the baseline accuracy."""


def frontier_points(runs: list[Any]) -> tuple[dict[str, list[tuple[float, Any]]], float | None]:
    """({curve label: [(compression ratio, Interval of accuracy over runs)] sorted by ratio},
    baseline accuracy or None). Only runs with a `degrade` param and a memory loop's
    accuracy and compression ratio take part."""
    from vtc_lab.eval.stats import mean_ci

    groups: dict[tuple[str, float], list[float]] = defaultdict(list)
    text_acc: list[float] = []
    for run in runs:
        by_loop: dict[str, dict[str, float]] = defaultdict(dict)
        for key, value in run.metrics.items():
            m = _EVAL.match(key)
            if m:
                by_loop[m.group(2)][m.group(3)] = value
        if "accuracy" in by_loop.get("text", {}):
            text_acc.append(by_loop["text"]["accuracy"])
        level = run.params.get("degrade")
        if level is None:
            continue
        for loop, vals in by_loop.items():
            if loop in ("text", "none") or "accuracy" not in vals or not vals.get("compression_ratio"):
                continue
            label = level
            for name in _DOWNSCALE_PARAMS:
                if name in run.params and float(run.params[name]) != 1.0:
                    label = f"{level}, downscale {float(run.params[name]):g}"
            groups[(label, round(vals["compression_ratio"], 3))].append(vals["accuracy"])
    curves: dict[str, list[tuple[float, Any]]] = defaultdict(list)
    for (label, ratio), accs in sorted(groups.items()):
        curves[label].append((ratio, mean_ci(accs)))
    if text_acc:
        baseline = sum(text_acc) / len(text_acc)
    else:
        clean = [iv.mean for ratio, iv in curves.get("none", [])]
        baseline = max(clean) if clean else None
    return dict(curves), baseline


def plot_legibility_frontier(runs: list[Any], lk: Any) -> Any:
    """Accuracy (%) against compression (×), one curve per degradation with its 95 % band over
    seeds; the break line at half the baseline, points below it marked with a cross."""
    curves, baseline = frontier_points(runs)
    if not curves:
        return "no run has a `degrade` param with a memory loop's accuracy and compression_ratio"
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    palette = [matplotlib.colors.to_hex(c) for c in matplotlib.colormaps["tab10"].colors]
    fig, ax = plt.subplots(figsize=(7.5, 4.8), layout="constrained")
    order = sorted(curves, key=lambda c: (c.split(",")[0] not in ("none",), c))
    for i, label in enumerate(order):
        pts = curves[label]
        xs = [x for x, _ in pts]
        ys = [100 * iv.mean for _, iv in pts]
        color = palette[i % len(palette)]
        ax.plot(xs, ys, marker="o", color=color, lw=max(1.0, 3.0 - 0.5 * i), label=label,
                zorder=3 + i)
        lows = [100 * (iv.low if not math.isnan(iv.low) else iv.mean) for _, iv in pts]
        highs = [100 * (iv.high if not math.isnan(iv.high) else iv.mean) for _, iv in pts]
        ax.fill_between(xs, lows, highs, color=color, alpha=0.15, lw=0)
        if baseline is not None:
            broken = [(x, y) for x, y in zip(xs, ys) if y < 100 * BREAK_FRACTION * baseline]
            if broken:
                ax.scatter(*zip(*broken), marker="x", s=90, color="black", zorder=20)
    if baseline is not None:
        ax.axhline(100 * BREAK_FRACTION * baseline, color="0.4", ls="--", lw=1,
                   label=f"reading breaks (< {BREAK_FRACTION:g} x baseline {100 * baseline:.0f} %)")
    ax.set_xlabel("compression ratio (memory text tokens / vision tokens, ×)")
    ax.set_ylabel("accuracy (%), mean and 95 % CI over seeds")
    ax.set_ylim(-3, 103)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, title="page degradation", title_fontsize=8, loc="upper left",
              bbox_to_anchor=(1.01, 1.0))
    ax.set_title("Legibility frontier: accuracy vs compression per degradation")
    return fig
