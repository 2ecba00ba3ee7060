"""The misread figure of `vtc-lab report` (issue 23 §3: what a misread costs).

Every toy evaluation logs, per loop, `first_misread/<bucket>` (how many samples first misread
their memory in round n, `round_<n>`, or never, `none`) and `acc_by_first_misread/<bucket>`
(their strict accuracy; `vtc_lab.infer.metrics.read_metrics`). The figure draws that accuracy
against the bucket, one line per group of runs that are seeds of one setting, the mean over
seeds with its 95 % t-interval where at least two seeds have samples in the bucket, and the
samples behind each point (summed over seeds). Runs of the legibility frontier (a `degrade`
param) are grouped as its points are (`vtc_lab.tracking.frontier_plot.frontier_groups`): one
panel per model kind (compression and training pages), one line per page condition; other
runs by configuration and loop, one panel per benchmark. Kept apart from `plots.py`, which
lists it in its `PLOTS`; it imports nothing from it.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

from vtc_lab.tracking.frontier_plot import pages_label, render_setting, trained_on

_MISREAD = re.compile(r"^eval/([^/]+)/([^/]+)/(acc_by_first_misread|first_misread)/(none|round_\d+)$")
_EVAL = re.compile(r"^eval/([^/]+)/([^/]+)/([^/]+)$")


def bucket_order(bucket: str) -> int:
    """`none` (never misread) first, then the rounds in order."""
    return 0 if bucket == "none" else int(bucket.removeprefix("round_"))


def bucket_label(bucket: str) -> str:
    return "never" if bucket == "none" else f"round {bucket.removeprefix('round_')}"


def misread_series(runs: list[Any], config_of: dict[str, str]
                   ) -> dict[str, dict[str, dict[str, tuple[Any, int]]]]:
    """{panel: {series: {bucket: (Interval of accuracy over the runs with samples in the
    bucket, samples summed over them)}}}. `config_of`: run id -> configuration (for runs
    outside the frontier)."""
    from vtc_lab.eval.stats import mean_ci

    values: dict[tuple[tuple, str], dict[str, list[tuple[float, float]]]] = defaultdict(
        lambda: defaultdict(list))
    ratios: dict[tuple, list[float]] = defaultdict(list)
    for run in runs:
        found: dict[tuple[str, str], dict[str, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
        for key, value in run.metrics.items():
            m = _MISREAD.match(key)
            if m:
                found[(m.group(1), m.group(2))][m.group(4)][m.group(3)] = value
        for (bench, loop), buckets in found.items():
            ratio = run.metrics.get(f"eval/{bench}/{loop}/compression_ratio") or 0.0
            if run.params.get("degrade") is not None and ratio:
                panel: tuple = ("frontier", trained_on(run), render_setting(run, ratio))
                series = pages_label(run)
                ratios[panel].append(ratio)
            else:
                panel, series = ("bench", bench), f"{config_of.get(run.run_id, 'default')} · {loop}"
            for bucket, pair in buckets.items():
                if "acc_by_first_misread" in pair and pair.get("first_misread", 0) > 0:
                    values[(panel, series)][bucket].append(
                        (pair["acc_by_first_misread"], pair["first_misread"]))
    out: dict[str, dict[str, dict[str, tuple[Any, int]]]] = defaultdict(dict)
    for (panel, series), buckets in values.items():
        if panel[0] == "frontier":
            mean_ratio = sum(ratios[panel]) / len(ratios[panel])
            name = f"{mean_ratio:.2f}x, trained on {panel[1]}"
        else:
            name = panel[1]
        out[name][series] = {b: (mean_ci([a for a, _ in v]), int(sum(n for _, n in v)))
                             for b, v in buckets.items()}
    return dict(out)


def plot_accuracy_by_first_misread(runs: list[Any], lk: Any) -> Any:
    """One panel per model kind (or benchmark): accuracy (%) by the round of the first misread,
    a line per page condition (or configuration and loop), error bars 95 % CI over seeds, the
    samples behind each point written beside it."""
    panels = misread_series(runs, lk.config_of)
    if not panels:
        return "no run has eval/<benchmark>/<loop>/acc_by_first_misread/<bucket> (the toy benchmark)"
    from vtc_lab.tracking.plot_style import PALETTE, figure

    names = sorted(panels, key=lambda p: ("trained on none" not in p, p))
    fig, axes = figure(1, len(names), figsize=(5.2 * len(names) + 2, 4.6), squeeze=False,
                       sharey=True)
    all_series = sorted({s for p in panels.values() for s in p},
                        key=lambda c: ("," in c, c.split(",")[0] != "none", c))
    for ax, name in zip(axes[0], names):
        buckets = sorted({b for s in panels[name].values() for b in s}, key=bucket_order)
        series = [s for s in all_series if s in panels[name]]
        width = 0.6 / max(1, len(series))
        for j, label in enumerate(series):
            pts = sorted(panels[name][label].items(), key=lambda kv: bucket_order(kv[0]))
            xs = [buckets.index(b) + (j - (len(series) - 1) / 2) * width for b, _ in pts]
            ys = [100 * iv.mean for _, (iv, _) in pts]
            color = PALETTE[all_series.index(label) % len(PALETTE)]
            ax.plot(xs, ys, marker="o", color=color, lw=1.3, zorder=3)
            for x, y, (_, (iv, n)) in zip(xs, ys, pts):
                if iv.has_interval:
                    ax.errorbar([x], [y], yerr=[[y - 100 * max(0.0, iv.low)], [100 * min(1.0, iv.high) - y]],
                                color=color, capsize=2, lw=0.9, alpha=0.7)
                ax.annotate(f"{n}", (x, y), xytext=(3, 3), textcoords="offset points",
                            fontsize=6, color=color)
        ax.set_xticks(range(len(buckets)), [bucket_label(b) for b in buckets])
        ax.set_xlabel("round of the first misread")
        ax.set_title(name, fontsize=10)
        ax.set_ylim(-3, 106)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("accuracy (%), mean over seeds; bars 95 % CI (≥ 2 seeds)")
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=PALETTE[i % len(PALETTE)], marker="o", label=label)
               for i, label in enumerate(all_series)]
    axes[0][-1].legend(handles=handles, fontsize=8, title="pages at evaluation / series\n"
                       "(numbers: samples, summed over seeds)", title_fontsize=7,
                       loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle("Accuracy by the round of the first misread (a round misreads when its first "
                 "line is not its memory's last state stepped once)", fontsize=10)
    return fig
