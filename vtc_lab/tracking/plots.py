"""Comparison plots for `vtc-lab report` (matplotlib, Agg; PNG files).

Each plot is drawn only when the runs carry its metrics; `make_plots` says which were skipped
and why, so an empty figure never pretends to be a result.
Metric keys follow the eval contract: `eval/<benchmark>/<loop>/<name>`. How every figure looks
(colours, markers, line styles, legends, saving) is `vtc_lab.tracking.plot_style`.

One look across every figure: a configuration (`vtc_lab.tracking.aggregate.config_keys`, the
swept values except the seed) keeps one colour and one marker in all of them, a loop keeps one
line style; legends name the configurations and loops, nothing else. Accuracy and read rate
are never on one axis; losses are on a log scale; figures are saved with a tight bounding box
so no label is clipped.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from vtc_lab.tracking.aggregate import eval_points, length_curves, loop_order
from vtc_lab.tracking.plot_style import EVAL_KEY as _EVAL
from vtc_lab.tracking.plot_style import PALETTE  # noqa: F401 - re-exported (tests, callers)
from vtc_lab.tracking.plot_style import Drawn, Look, look
from vtc_lab.tracking.plot_style import eval_values as _eval_values
from vtc_lab.tracking.plot_style import figure as _figure
from vtc_lab.tracking.plot_style import filled as _filled
from vtc_lab.tracking.plot_style import ladder as _ladder
from vtc_lab.tracking.plot_style import legend as _legend
from vtc_lab.tracking.plot_style import loop_fill_handles as _loop_fill_handles
from vtc_lab.tracking.plot_style import save as _save
from vtc_lab.tracking.crossover_plot import plot_render_crossover
from vtc_lab.tracking.frontier_plot import plot_legibility_frontier
from vtc_lab.tracking.misread_plot import plot_accuracy_by_first_misread
from vtc_lab.tracking.report import RunRecord


def plot_accuracy_vs_compression(runs: list[RunRecord], lk: Look) -> Drawn:
    """Accuracy against the memory's size in the context and against its compression ratio:
    one point per run and loop (each seed its own point)."""
    acc = _eval_values(runs, "accuracy")
    vis = _eval_values(runs, "context_vision_tokens_mean")
    ratio = _eval_values(runs, "compression_ratio")
    keys = [k for k in acc if k in vis]
    if not keys:
        return "no run has eval/<benchmark>/<loop>/accuracy with context_vision_tokens_mean"
    fig, axes = _figure(1, 2, figsize=(12, 4.8))
    for run_id, bench, loop in sorted(keys):
        cfg = lk.config_of[run_id]
        size = _ladder(sorted(lk.colors).index(cfg))["ms"]
        style = dict(edgecolors=lk.colors[cfg], marker=lk.markers[cfg], s=size ** 2, alpha=0.8,
                     zorder=_ladder(sorted(lk.colors).index(cfg))["zorder"],
                     facecolors=lk.colors[cfg] if _filled(lk, loop) else "none")
        y = 100 * acc[(run_id, bench, loop)]
        axes[0].scatter([vis[(run_id, bench, loop)]], [y], **style)
        if ratio.get((run_id, bench, loop)):  # loops without images have no ratio
            axes[1].scatter([ratio[(run_id, bench, loop)]], [y], **style)
    configs = sorted({lk.config_of[k[0]] for k in keys})
    loops = sorted({k[2] for k in keys})
    axes[0].set_xlabel("vision tokens in context per round (mean, tokens)")
    axes[1].set_xlabel("compression ratio (memory text tokens / vision tokens, ×)")
    for ax in axes:
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(-3, 103)
        ax.grid(alpha=0.3)
    _legend(axes[1], lk, configs, extra=_loop_fill_handles(lk, loops), loc="upper left",
            bbox_to_anchor=(1.01, 1.0))
    axes[0].set_title("Accuracy vs optical-memory size (one point per run and loop)")
    axes[1].set_title("Accuracy vs compression")
    return fig


def plot_data_compression(runs: list[RunRecord], lk: Look) -> Drawn:
    """Dataset-level compression (build-data sweeps): one bar per run, coloured by configuration."""
    pts = [r for r in runs if "data/compression_ratio" in r.metrics]
    if not pts:
        return "no run has data/compression_ratio"
    fig, ax = _figure(figsize=(max(6, 0.8 * len(pts) + 3), 5.2))
    xs = range(len(pts))
    vals = [r.metrics["data/compression_ratio"] for r in pts]
    bars = ax.bar(xs, vals, color=[lk.color(r) for r in pts])
    for bar, r in zip(bars, pts):
        seg = r.metrics.get("data/mean_segments_per_problem")
        note = f"{r.metrics['data/compression_ratio']:.2f}×" + (f"\n{seg:.1f} rounds" if seg is not None else "")
        ax.annotate(note, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                    va="bottom", fontsize=7, xytext=(0, 2), textcoords="offset points")
    ax.axhline(1.0, color="grey", ls="--", lw=1)
    ax.set_xticks(list(xs), [r.name for r in pts], rotation=30, ha="right", fontsize=7)
    ax.set_ylim(0, max(1.0, max(vals)) * 1.25)
    ax.set_ylabel("compression ratio (text tokens / vision tokens, ×)")
    ax.set_xlabel("run")
    ax.set_title("Memory compression of the built dataset\n(memory segments, pooled; dashed: 1×, no saving)")
    _legend(ax, lk, sorted({lk.config_of[r.run_id] for r in pts}), loc="lower right")
    ax.grid(axis="y", alpha=0.3)
    return fig


def plot_latency_vs_length(runs: list[RunRecord], lk: Look) -> Drawn:
    lat = _eval_values(runs, "latency_mean_s")
    gen = _eval_values(runs, "generated_tokens_mean")
    keys = [k for k in lat if k in gen]
    if not keys:
        return "no run has eval/<benchmark>/<loop>/latency_mean_s with generated_tokens_mean"
    fig, ax = _figure(figsize=(8, 4.8))
    for run_id, bench, loop in sorted(keys):
        cfg = lk.config_of[run_id]
        ladder = _ladder(sorted(lk.colors).index(cfg))
        ax.plot([gen[(run_id, bench, loop)]], [lat[(run_id, bench, loop)]], color=lk.colors[cfg],
                marker=lk.markers[cfg], ls="none", ms=ladder["ms"], zorder=ladder["zorder"], alpha=0.8,
                mfc=lk.colors[cfg] if _filled(lk, loop) else "none")
    ax.set_xlabel("reasoning length (generated tokens per problem, mean)")
    ax.set_ylabel("end-to-end latency (s per problem, mean)")
    ax.set_title("Latency vs reasoning length (one point per run and loop)")
    ax.grid(alpha=0.3)
    _legend(ax, lk, sorted({lk.config_of[k[0]] for k in keys}),
            extra=_loop_fill_handles(lk, sorted({k[2] for k in keys})), loc="upper left",
            bbox_to_anchor=(1.01, 1.0))
    return fig


def plot_rounds_histogram(runs: list[RunRecord], lk: Look, max_series: int = 8) -> Drawn:
    """Problems per number of rounds, summed over each configuration's seeds."""
    series: dict[tuple[str, str, str], dict[int, float]] = defaultdict(lambda: defaultdict(float))
    for r in runs:
        for key, value in r.metrics.items():
            m = _EVAL.match(key)
            if m and m.group(3).startswith("rounds_hist/"):
                series[(lk.config_of[r.run_id], m.group(1), m.group(2))][
                    int(m.group(3).split("/")[1])] += value
    series = {k: v for k, v in series.items() if sum(v.values()) > 0}
    if not series:
        return "no run has eval/<benchmark>/<loop>/rounds_hist/<k>"
    names = sorted(series)[:max_series]
    benches = {n[1] for n in names}
    rounds = sorted({k for n in names for k in series[n]})
    fig, ax = _figure(figsize=(8, 4.8))
    width = 0.8 / len(names)
    hatches = ("", "//", "..", "xx")
    loops = list(lk.loop_styles)
    for i, (cfg, bench, loop) in enumerate(names):
        label = cfg + (f" · {bench}" if len(benches) > 1 else "") + f" · loop: {loop}"
        ax.bar([k + (i - (len(names) - 1) / 2) * width for k in rounds],
               [series[(cfg, bench, loop)].get(k, 0) for k in rounds], width=width,
               color=lk.colors[cfg], edgecolor="black", linewidth=0.4,
               hatch=hatches[loops.index(loop) % len(hatches)] if loop in loops else "", label=label)
    ax.set_xticks(rounds)
    ax.set_xlabel("rounds used per problem")
    ax.set_ylabel("problems (count, summed over seeds)")
    ax.set_title("Rounds histogram" + (f" (first {max_series} series)" if len(series) > max_series else ""))
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis="y", alpha=0.3)
    return fig


def plot_training_curves(runs: list[RunRecord], lk: Look) -> Drawn:
    """Train (solid) and validation (dashed) loss per run, coloured by configuration; log
    scale, so the late, small differences stay visible."""
    from matplotlib.lines import Line2D

    with_curves = [r for r in runs if any(r.curves.get(k) for k in
                                          ("train/loss", "train/loss_step", "val/loss"))]
    if not with_curves:
        return "no run has train/loss or val/loss history"
    fig, ax = _figure(figsize=(8, 4.8))
    kinds = set()
    configs = sorted(lk.colors)
    for r in sorted(with_curves, key=lambda r: configs.index(lk.config_of[r.run_id])):
        cfg = lk.config_of[r.run_id]
        ladder = _ladder(configs.index(cfg))
        for key, style in (("train/loss", "-"), ("train/loss_step", "-"), ("val/loss", "--")):
            pts = [p for p in r.curves.get(key, []) if p[1] > 0]
            if pts:
                kinds.add(style)
                ax.plot([p[0] for p in pts], [p[1] for p in pts], ls=style, color=lk.colors[cfg],
                        marker=lk.markers[cfg], markevery=max(1, len(pts) // 8), alpha=0.85,
                        **ladder)
    ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (cross-entropy, nats per target token; log scale)")
    ax.set_title("Training loss (one line per run)")
    ax.grid(alpha=0.3, which="both")
    extra = [Line2D([], [], color="0.35", ls=s, label=n) for s, n in (("-", "train"), ("--", "validation"))
             if s in kinds]
    _legend(ax, lk, sorted({lk.config_of[r.run_id] for r in with_curves}), extra=extra,
            loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def plot_accuracy_vs_samples(runs: list[RunRecord], lk: Look) -> Drawn:
    """The learning curve: accuracy (left column) and read rate (right column, never on the
    accuracy axis) of each configuration's loops at each in-training evaluation, against the
    training samples seen by then: the mean over seeds as a line, its 95 % t-interval as a band
    (none for a single seed). One row per benchmark."""
    pts = [p for p in eval_points(runs, ("accuracy", "read_rate")) if p.samples_seen is not None]
    if not pts:
        return "no run has eval/<benchmark>/<loop>/accuracy histories with train/samples_seen"
    benches = sorted({p.arm.bench for p in pts})
    metrics = [m for m in ("accuracy", "read_rate") if any(p.metric == m for p in pts)]
    fig, axes = _figure(len(benches), len(metrics), figsize=(6.5 * len(metrics), 4.2 * len(benches)),
                        squeeze=False)
    series: dict[tuple, list] = defaultdict(list)
    for p in pts:
        series[(p.arm.bench, p.metric, p.arm.config, p.arm.loop)].append(p)
    order = sorted({(cfg, loop) for _, _, cfg, loop in series}, key=lambda x: (x[0], loop_order(x[1])))
    for (bench, metric, cfg, loop), ps in sorted(series.items()):
        ax = axes[benches.index(bench)][metrics.index(metric)]
        ps.sort(key=lambda p: p.samples_seen)
        x = [p.samples_seen for p in ps]
        color = lk.colors[cfg]
        ax.plot(x, [100 * p.interval.mean for p in ps], color=color, marker=lk.markers[cfg],
                ls=lk.loop_styles.get(loop, "-"), mfc=color if _filled(lk, loop) else "white",
                **_ladder(order.index((cfg, loop))))
        band = [p for p in ps if p.interval.has_interval]
        if band:
            ax.fill_between([p.samples_seen for p in band], [100 * p.interval.low for p in band],
                            [100 * p.interval.high for p in band], color=color, alpha=0.15, lw=0)
    n_seeds = max(p.interval.n for p in pts)
    for i, bench in enumerate(benches):
        for j, metric in enumerate(metrics):
            ax = axes[i][j]
            ax.set_xlabel("training samples seen")
            ax.set_ylabel("accuracy (% of problems)" if metric == "accuracy"
                          else "read rate (% of checked rounds)")
            ax.set_ylim(-2, 102)
            ax.grid(alpha=0.3)
            ax.set_title(f"{bench}: {metric.replace('_', ' ')}")
    loops = sorted({p.arm.loop for p in pts})
    _legend(axes[0][-1], lk, sorted({p.arm.config for p in pts}), loops,
            title=f"line: mean over seeds; band: 95 % CI (max n={n_seeds})", title_fontsize=7,
            loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def plot_loop_speedup(runs: list[RunRecord], lk: Look) -> Drawn:
    """The latency benchmark (experiments/perf/loop_latency.py): text/optical speedup vs total
    reasoning length, one line per (model, round length, reuse), and the optical loop's split."""
    points = [r for r in runs if "perf/speedup" in r.metrics and "bench.total_tokens" in r.params]
    if not points:
        return "no run has perf/speedup with param bench.total_tokens (experiments/perf/loop_latency.py)"
    fig, axes = _figure(1, 2, figsize=(12, 4.8))
    series = defaultdict(list)
    for r in points:
        p = r.params
        series[(p.get("bench.model"), p.get("bench.round_tokens"), p.get("bench.reuse"))].append(
            (int(p["bench.total_tokens"]), r.metrics["perf/speedup"]))
    for (model, rnd, reuse), pts in sorted(series.items()):
        pts.sort()
        axes[0].plot([x for x, _ in pts], [y for _, y in pts], marker="o",
                     ls="-" if reuse == "True" else "--", label=f"{model} · S={rnd} · reuse={reuse}")
    axes[0].axhline(1.0, color="grey", lw=0.8)
    axes[0].set_xlabel("total reasoning tokens T (text: one generation; optical: T/S rounds)")
    axes[0].set_ylabel("speedup = text latency / optical latency (x)")
    axes[0].set_title("Optical vs text loop latency")
    axes[0].legend(fontsize=7)
    axes[0].grid(alpha=0.3)
    parts = ["render_s", "preprocess_s", "vision_s", "prefill_s", "decode_s", "other_s"]
    ordered = sorted(points, key=lambda r: (r.params.get("bench.model", ""), r.params.get("bench.reuse", ""),
                                            int(r.params["bench.total_tokens"])))
    bottom = [0.0] * len(ordered)
    for part in parts:
        vals = [r.metrics.get(f"perf/optical/{part}", 0.0) for r in ordered]
        axes[1].bar(range(len(ordered)), vals, bottom=bottom, label=part.removesuffix("_s"))
        bottom = [b + v for b, v in zip(bottom, vals)]
    axes[1].set_xticks(range(len(ordered)))
    axes[1].set_xticklabels([f"{r.params.get('bench.model')}\nT={r.params['bench.total_tokens']}"
                             f" reuse={r.params.get('bench.reuse')}" for r in ordered],
                            rotation=60, fontsize=6, ha="right")
    axes[1].set_ylabel("optical loop latency (s)")
    axes[1].set_title("Where the optical loop's time goes")
    axes[1].legend(fontsize=7)
    axes[1].grid(axis="y", alpha=0.3)
    return fig


def plot_accuracy_vs_length(runs: list[RunRecord], lk: Look) -> Drawn:
    """Accuracy against problem length (issue 23 §5: what memory buys under a fixed context):
    one line per configuration and loop at its last evaluation, the band its 95 % interval
    over seeds (no band with one seed)."""
    curves = length_curves(runs)
    if not curves:
        return "no run has eval/<benchmark>/<loop>/accuracy_len_<first>-<last> (a benchmark " \
               "whose problems record their length, e.g. toy_long)"
    fig, ax = _figure(figsize=(8, 4.8))
    for i, (arm, pts) in enumerate(sorted(curves.items(), key=lambda kv: (
            kv[0].bench, kv[0].config, loop_order(kv[0].loop)))):
        xs = [(lo + hi) / 2 for lo, hi, _ in pts]
        color = lk.colors.get(arm.config, "0.3")
        ax.plot(xs, [iv.mean for _, _, iv in pts], color=color, marker=lk.markers.get(arm.config, "o"),
                ls=lk.loop_styles.get(arm.loop, "-"), **_ladder(i))
        if all(iv.has_interval for _, _, iv in pts):
            ax.fill_between(xs, [iv.low for _, _, iv in pts], [iv.high for _, _, iv in pts],
                            color=color, alpha=0.15, lw=0)
    ax.set_xlabel("problem length (steps; bucket midpoint)")
    ax.set_ylabel("accuracy (last evaluation; band: 95 % CI over seeds)")
    ax.set_ylim(-0.03, 1.03)
    ax.set_title("Accuracy vs problem length")
    ax.grid(alpha=0.3)
    _legend(ax, lk, sorted({a.config for a in curves if a.config in lk.colors}),
            sorted({a.loop for a in curves}), loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


PLOTS = {
    "accuracy_by_first_misread.png": plot_accuracy_by_first_misread,
    "accuracy_vs_problem_length.png": plot_accuracy_vs_length,
    "accuracy_vs_samples.png": plot_accuracy_vs_samples,
    "accuracy_vs_vision_tokens.png": plot_accuracy_vs_compression,
    "data_compression.png": plot_data_compression,
    "latency_vs_reasoning_length.png": plot_latency_vs_length,
    "legibility_frontier.png": plot_legibility_frontier,
    "loop_speedup_vs_length.png": plot_loop_speedup,
    "render_crossover.png": plot_render_crossover,
    "rounds_histogram.png": plot_rounds_histogram,
    "training_loss.png": plot_training_curves,
}


def figures(runs: list[RunRecord]) -> dict[str, Drawn]:
    """file name -> Figure, or why it is not drawn; one `Look` shared by all of them. The
    caller closes the figures (`make_plots` saves and closes them)."""
    lk = look(runs)
    return {name: fn(runs, lk) for name, fn in PLOTS.items()}


def make_plots(runs: list[RunRecord], out_dir: Path) -> tuple[list[Path], dict[str, str]]:
    """Draw every plot the runs have data for; returns (written files, {skipped file: why})."""
    written, skipped = [], {}
    for name, fig in figures(runs).items():
        if isinstance(fig, str):
            skipped[name] = fig
        else:
            _save(fig, out_dir / name)
            written.append(out_dir / name)
    return written, skipped
