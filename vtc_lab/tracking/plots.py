"""Comparison plots for `vtc-lab report` (matplotlib, Agg; PNG files).

Each plot is drawn only when the runs carry its metrics; `make_plots` says which were skipped
and why, so an empty figure never pretends to be a result.
Metric keys follow the eval contract: `eval/<benchmark>/<loop>/<name>`.
"""

from __future__ import annotations

import io
import re
from collections import defaultdict
from pathlib import Path
from typing import Optional

from vtc_lab import atomic
from vtc_lab.tracking.report import RunRecord, varying_params

_EVAL = re.compile(r"^eval/([^/]+)/([^/]+)/(.+)$")
MARKERS = {"optical": "o", "text": "s", "none": "^"}


def _short(name: str, limit: int = 38) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


def run_labels(runs: list[RunRecord]) -> dict[str, str]:
    """Run name -> what varies about it (`font_size=7, dpi=96`): the short key params when they
    vary, else every varying param, else the run name."""
    from vtc_lab.tracking.provenance import KEY_PARAMS

    keys = varying_params(runs)
    key_params = [k for k in keys if k in KEY_PARAMS]  # the designed axes, not side effects
    short = [k for k in keys if "." not in k and "/" not in k]
    keys = key_params or short or keys
    out = {}
    for r in runs:
        label = ", ".join(f"{k}={r.params.get(k, '-')}" for k in keys[:3])
        out[r.name] = _short(label or r.name, 44)
    return out


def _eval_values(runs: list[RunRecord], metric: str) -> dict[tuple[str, str, str], float]:
    """(run name, benchmark, loop) -> value of `eval/<b>/<loop>/<metric>`."""
    out = {}
    for r in runs:
        for key, value in r.metrics.items():
            m = _EVAL.match(key)
            if m and m.group(3) == metric:
                out[(r.name, m.group(1), m.group(2))] = value
    return out


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    """Every report plot ends the same way: tight layout, 110 dpi PNG written atomically, figure freed."""
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    _plt().close(fig)
    atomic.write_bytes(path, buf.getvalue())


def plot_accuracy_vs_compression(runs: list[RunRecord], path: Path) -> Optional[str]:
    acc = _eval_values(runs, "accuracy")
    vis = _eval_values(runs, "context_vision_tokens_mean")
    ratio = _eval_values(runs, "compression_ratio")
    keys = [k for k in acc if k in vis]
    if not keys:
        return "no run has eval/<benchmark>/<loop>/accuracy with context_vision_tokens_mean"
    labels = run_labels(runs)
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    series = defaultdict(list)
    for run, bench, loop in keys:
        series[(bench, loop)].append((vis[(run, bench, loop)], ratio.get((run, bench, loop)),
                                      100 * acc[(run, bench, loop)], run))
    for (bench, loop), pts in sorted(series.items()):
        label = f"{bench} · {loop} loop"
        if loop == "text":  # no pages, no ratio: the baseline the optical points are read against
            mean = sum(p[2] for p in pts) / len(pts)
            axes[1].axhline(mean, linestyle="--", color="gray", label=f"{label} (mean of {len(pts)})")
        axes[0].scatter([p[0] for p in pts], [p[2] for p in pts], marker=MARKERS.get(loop, "D"),
                        label=label, s=40)
        with_ratio = [p for p in pts if p[1]]  # text/none loops have no images: no ratio
        axes[1].scatter([p[1] for p in with_ratio], [p[2] for p in with_ratio],
                        marker=MARKERS.get(loop, "D"), label=label, s=40)
        if len(keys) <= 12:
            # runs that land on the same point share one label instead of overprinting
            at: dict[tuple[float, float], list[str]] = defaultdict(list)
            for p in (p for p in pts if p[0] > 0):  # text/none loops all sit at 0
                at[(p[0], p[2])].append(labels[p[3]])
            for xy, names in at.items():
                axes[0].annotate("\n".join(names), xy, fontsize=7, alpha=0.7,
                                 xytext=(3, 3), textcoords="offset points")
    axes[0].set_xlabel("vision tokens in context per round (mean, tokens)")
    axes[1].set_xlabel("compression ratio (memory text tokens / vision tokens, ×)")
    for ax in axes:
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(-3, 103)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, title="benchmark · loop", title_fontsize=8)
    axes[0].set_title("Accuracy vs optical-memory size")
    axes[1].set_title("Accuracy vs compression")
    _save(fig, path)
    return None


def plot_data_compression(runs: list[RunRecord], path: Path) -> Optional[str]:
    """Dataset-level compression (build-data sweeps): one bar per run."""
    pts = [(r.name, r.metrics["data/compression_ratio"], r.metrics.get("data/mean_segments_per_problem"))
           for r in runs if "data/compression_ratio" in r.metrics]
    if not pts:
        return "no run has data/compression_ratio"
    labels = run_labels([r for r in runs if "data/compression_ratio" in r.metrics])
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6, 0.8 * len(pts) + 3), 5.2))
    xs = range(len(pts))
    bars = ax.bar(xs, [p[1] for p in pts], color="#4C72B0", label="compression ratio")
    for bar, p in zip(bars, pts):
        note = f"{p[1]:.2f}×" + (f"\n{p[2]:.1f} rounds" if p[2] is not None else "")
        ax.annotate(note, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                    va="bottom", fontsize=7, xytext=(0, 2), textcoords="offset points")
    ax.axhline(1.0, color="grey", ls="--", lw=1, label="1× (no saving)")
    ax.set_xticks(list(xs), [labels[p[0]] for p in pts], rotation=30, ha="right", fontsize=7)
    ax.set_ylim(0, max(1.0, max(p[1] for p in pts)) * 1.25)
    ax.set_ylabel("compression ratio (text tokens / vision tokens, ×)")
    ax.set_xlabel("run")
    ax.set_title("Memory compression of the built dataset\n(memory segments, pooled)")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="y", alpha=0.3)
    _save(fig, path)
    return None


def plot_latency_vs_length(runs: list[RunRecord], path: Path) -> Optional[str]:
    lat = _eval_values(runs, "latency_mean_s")
    gen = _eval_values(runs, "generated_tokens_mean")
    keys = [k for k in lat if k in gen]
    if not keys:
        return "no run has eval/<benchmark>/<loop>/latency_mean_s with generated_tokens_mean"
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.8))
    by_loop = defaultdict(list)
    for k in keys:
        by_loop[k[2]].append((gen[k], lat[k]))
    for loop, pts in sorted(by_loop.items()):
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=MARKERS.get(loop, "D"),
                ls="none", ms=7, alpha=0.8, label=f"{loop} loop (one point per run)")
    ax.set_xlabel("reasoning length (generated tokens per problem, mean)")
    ax.set_ylabel("end-to-end latency (s per problem, mean)")
    ax.set_title("Latency vs reasoning length per loop")
    ax.grid(alpha=0.3)
    ax.legend(title="loop", fontsize=8)
    _save(fig, path)
    return None


def plot_rounds_histogram(runs: list[RunRecord], path: Path, max_series: int = 8) -> Optional[str]:
    labels = run_labels(runs)
    series: dict[str, dict[int, float]] = defaultdict(dict)
    for r in runs:
        for key, value in r.metrics.items():
            m = _EVAL.match(key)
            if m and m.group(3).startswith("rounds_hist/"):
                series[f"{labels[r.name]} · {m.group(1)} · {m.group(2)}"][
                    int(m.group(3).split("/")[1])] = value
    series = {k: v for k, v in series.items() if sum(v.values()) > 0}
    if not series:
        return "no run has eval/<benchmark>/<loop>/rounds_hist/<k>"
    names = sorted(series)[:max_series]
    rounds = sorted({k for n in names for k in series[n]})
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4.8))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        ax.bar([k + (i - (len(names) - 1) / 2) * width for k in rounds],
               [series[name].get(k, 0) for k in rounds], width=width, label=name)
    ax.set_xticks(rounds)
    ax.set_xlabel("rounds used per problem")
    ax.set_ylabel("problems (count)")
    ax.set_title("Rounds histogram" + (f" (first {max_series} series)" if len(series) > max_series else ""))
    ax.legend(fontsize=7, title="run · benchmark · loop", title_fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    _save(fig, path)
    return None


def plot_training_curves(runs: list[RunRecord], path: Path) -> Optional[str]:
    with_curves = [r for r in runs if r.curves]
    if not with_curves:
        return "no run has train/loss or val/loss history"
    labels = run_labels(runs)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4.8))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, r in enumerate(with_curves):
        color = colors[i % len(colors)]
        for key, style in (("train/loss", "-"), ("train/loss_step", "-"), ("val/loss", "--")):
            pts = r.curves.get(key)
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], ls=style, color=color,
                        marker="o" if len(pts) < 3 else None,
                        label=f"{labels[r.name]} · {key}")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (cross-entropy, nats per target token)")
    ax.set_title("Training loss (solid: train, dashed: validation)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    _save(fig, path)
    return None


def plot_loop_speedup(runs: list[RunRecord], path: Path) -> Optional[str]:
    """The latency benchmark (experiments/perf/loop_latency.py): text/optical speedup vs total
    reasoning length, one line per (model, round length, reuse), and the optical loop's split."""
    points = [r for r in runs if "perf/speedup" in r.metrics and "bench.total_tokens" in r.params]
    if not points:
        return "no run has perf/speedup with param bench.total_tokens (experiments/perf/loop_latency.py)"
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
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
    _save(fig, path)
    return None


def plot_accuracy_vs_samples(runs: list[RunRecord], path: Path) -> Optional[str]:
    """The learning curve: end-to-end accuracy (solid) and read rate (dotted) of each loop at
    each in-training evaluation, against the training samples seen by then."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(12, 4.8))
    labels = run_labels(runs)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    drawn = 0
    for r in runs:
        seen = dict(r.curves.get("train/samples_seen", []))
        if not seen:
            continue
        for key, pts in sorted(r.curves.items()):
            m = _EVAL.match(key)
            if not m or m.group(3) not in ("accuracy", "read_rate"):
                continue
            xy = [(seen[s], 100 * v) for s, v in pts if s in seen]
            if not xy:
                continue
            loop = m.group(2)
            color = colors[list(MARKERS).index(loop) % len(colors)] if loop in MARKERS else None
            ax.plot([p[0] for p in xy], [p[1] for p in xy], marker=MARKERS.get(loop, "o"),
                    ls="-" if m.group(3) == "accuracy" else ":", color=color,
                    label=f"{labels[r.name]} · {m.group(1)} · {loop} · {m.group(3)}")
            drawn += 1
    if not drawn:
        plt.close(fig)
        return "no run has eval/<benchmark>/<loop>/accuracy histories with train/samples_seen"
    ax.set_xlabel("training samples seen")
    ax.set_ylabel("% of held-out problems (accuracy) / rounds (read rate)")
    ax.set_ylim(-2, 102)
    ax.set_title("Learning curve: accuracy (solid) and read rate (dotted) per loop")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside, never over
    _save(fig, path)
    return None


PLOTS = {
    "accuracy_vs_samples.png": plot_accuracy_vs_samples,
    "accuracy_vs_vision_tokens.png": plot_accuracy_vs_compression,
    "data_compression.png": plot_data_compression,
    "latency_vs_reasoning_length.png": plot_latency_vs_length,
    "loop_speedup_vs_length.png": plot_loop_speedup,
    "rounds_histogram.png": plot_rounds_histogram,
    "training_loss.png": plot_training_curves,
}


def make_plots(runs: list[RunRecord], out_dir: Path) -> tuple[list[Path], dict[str, str]]:
    """Draw every plot the runs have data for; returns (written files, {skipped file: why})."""
    written, skipped = [], {}
    for name, fn in PLOTS.items():
        why = fn(runs, out_dir / name)
        if why is None:
            written.append(out_dir / name)
        else:
            skipped[name] = why
    return written, skipped
