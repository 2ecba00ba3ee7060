"""The render-crossover figure of `vtc-lab report` (issue 23 §6: when rendering does not pay).

`experiments/perf/render_crossover.py` logs one MLflow run per (model, round length S): param
`crossover.round_tokens`, and per repeat (the metric's step) the text and optical loops'
latency and their difference (`CROSSOVER_KEYS`); and one run of cost-model predictions
(param `crossover.predicted`), the predicted optical − text difference of an 8-9B model on a
GPU at step S. The figure draws the measured difference against S with its 95 % t-interval
over repeats and the crossover (where the mean difference changes sign), the per-loop times
beside it, and the predictions in their own panel (another model and device: another scale).
Kept apart from `plots.py`, which lists it in its `PLOTS`; it imports nothing from it.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any, Optional

from vtc_lab.tracking.report import CROSSOVER_PREFIX as PREFIX

ROUND_PARAM = "crossover.round_tokens"
MODEL_PARAM = "crossover.model"
PREDICTED_PARAM = "crossover.predicted"
CROSSOVER_KEYS = {name: PREFIX + name for name in ("text_s", "optical_s", "delta_s", "work_delta_s")}
"""Per repeat (step = repeat index): each loop's latency of one problem, optical − text, and
optical − text of the memory work alone (render + preprocess + vision + prefill)."""
_PREDICTED = re.compile(rf"^{PREFIX}predicted/([^/]+)/([^/]+)/delta_s$")
"""`crossover/predicted/<model>/<regime>/delta_s` at step S (seconds, cost model)."""


def predicted_key(model: str, regime: str) -> str:
    return f"{PREFIX}predicted/{model}/{regime}/delta_s"


def crossover(points: list[tuple[float, float]]) -> Optional[float]:
    """The x where y (sorted by x) first goes from > 0 to <= 0, linear between the two points;
    None when it never does (or is <= 0 from the first point: then below the range). One home
    for the script's printed crossover and the figure's marked one."""
    pts = sorted(points)
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if y0 > 0 >= y1:
            return x0 + (x1 - x0) * y0 / (y0 - y1)
    return None


def measured_series(runs: list[Any]) -> dict[str, dict[str, list[tuple[int, Any]]]]:
    """{model: {quantity (CROSSOVER_KEYS): [(S, Interval over repeats)] sorted by S}} of the
    measured runs; a repeat is one step of the run's history (the latest value if logged
    twice)."""
    from vtc_lab.eval.stats import mean_ci

    out: dict[str, dict[str, list[tuple[int, Any]]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        if ROUND_PARAM not in run.params or run.params.get(PREDICTED_PARAM) == "true":
            continue
        s = int(run.params[ROUND_PARAM])
        model = run.params.get(MODEL_PARAM, "model")
        for name, key in CROSSOVER_KEYS.items():
            values = dict(run.curves.get(key, []))
            if values:
                out[model][name].append((s, mean_ci([values[k] for k in sorted(values)])))
    return {m: {k: sorted(v, key=lambda t: t[0]) for k, v in q.items()} for m, q in out.items()}


def predicted_series(runs: list[Any]) -> dict[tuple[str, str], list[tuple[int, float]]]:
    """{(GPU model, regime): [(S, predicted optical − text seconds)]} from the prediction runs."""
    out: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for run in runs:
        for key, hist in run.curves.items():
            m = _PREDICTED.match(key)
            if m:
                out[(m.group(1), m.group(2))] = sorted(hist)
    return out


def plot_render_crossover(runs: list[Any], lk: Any) -> Any:
    """Left: optical − text latency per problem against the round length S, mean and 95 % band
    over repeats, the memory work's difference dashed, the crossover marked. Middle: each
    loop's latency. Right (when logged): the cost model's prediction for the GPU models."""
    series = measured_series(runs)
    if not any("delta_s" in q for q in series.values()):
        return ("no run has crossover/delta_s with param crossover.round_tokens "
                "(experiments/perf/render_crossover.py)")
    pred = predicted_series(runs)
    from vtc_lab.tracking.plot_style import PALETTE, figure

    fig, axes = figure(1, 3 if pred else 2, figsize=(16 if pred else 11.5, 4.6), squeeze=False)
    axes = axes[0]
    for i, (model, q) in enumerate(sorted(series.items())):
        color = PALETTE[i % len(PALETTE)]
        for name, ls, label in (("delta_s", "-", "end to end"), ("work_delta_s", "--", "memory work")):
            pts = q.get(name)
            if not pts:
                continue
            xs = [s for s, _ in pts]
            axes[0].plot(xs, [iv.mean for _, iv in pts], color=color, ls=ls, marker="o",
                         label=f"{model}: {label}")
            band = [(s, iv) for s, iv in pts if iv.has_interval]
            if band:
                axes[0].fill_between([s for s, _ in band], [iv.low for _, iv in band],
                                     [iv.high for _, iv in band], color=color, alpha=0.15, lw=0)
            if name == "delta_s":
                cross = crossover([(s, iv.mean) for s, iv in pts])
                if cross is not None:
                    axes[0].axvline(cross, color=color, ls=":", lw=1.2)
                    axes[0].annotate(f"S* ≈ {cross:.0f} (means)", (cross, 0), xytext=(4, 6),
                                     textcoords="offset points", fontsize=8, color=color)
        for name, marker in (("text_s", "s"), ("optical_s", "o")):
            pts = q.get(name, [])
            if pts:
                xs = [s for s, _ in pts]
                axes[1].plot(xs, [iv.mean for _, iv in pts], color=color, marker=marker,
                             ls="-" if name == "optical_s" else "--",
                             label=f"{model}: {name.removesuffix('_s')} loop")
                band = [(s, iv) for s, iv in pts if iv.has_interval]
                if band:
                    axes[1].fill_between([s for s, _ in band], [iv.low for _, iv in band],
                                         [iv.high for _, iv in band], color=color, alpha=0.12, lw=0)
    n = max(iv.n for q in series.values() for pts in q.values() for _, iv in pts)
    axes[0].axhline(0.0, color="0.4", lw=0.8)
    axes[0].set_ylabel("optical − text latency per problem (s)\nabove 0: rendering costs more")
    axes[0].set_title(f"Measured (CPU): mean, band 95 % CI over repeats (n={n})")
    axes[1].set_ylabel("latency per problem (s)")
    axes[1].set_title("Each loop's latency")
    for (model, regime), pts in sorted(pred.items()):
        axes[2].plot([s for s, _ in pts], [d for _, d in pts], ls="-" if regime == "eager" else "--",
                     label=f"{model}: {regime}")
        cross = crossover(pts)
        if cross is not None:
            axes[2].axvline(cross, color=axes[2].lines[-1].get_color(), ls=":", lw=1)
    if pred:
        axes[2].axhline(0.0, color="0.4", lw=0.8)
        axes[2].set_yscale("symlog", linthresh=1e-3)
        axes[2].set_ylabel("optical − text (s, cost model; symlog)")
        axes[2].set_title("Predicted (cost model, one GPU); dotted: crossover")
    from matplotlib.ticker import ScalarFormatter

    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(ScalarFormatter())  # 8, 32, 128: the lengths as typed
        ax.set_xlabel("round length S (text tokens per round)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    return fig
