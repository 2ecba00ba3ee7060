"""The `report` app (`vtc-lab report`): compare MLflow runs (an experiment, or one sweep) as
tables and plots.

`ReportConfig` is the app's schema; `make_report` writes `report.html` (one page, plots
embedded: what MLflow's artifact viewer renders), `report.md`, `runs.csv` and PNG plots to
`output_dir` and logs them as artifacts of the sweep's parent run (or of a `report` run in
the experiment).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from vtc_lab import atomic
from vtc_lab.tracking.aggregate import (
    comparisons_markdown, console_summary, eval_points, paired_tables, parent_metrics,
    points_markdown)
from vtc_lab.tracking.config import TrackingConfig
from vtc_lab.tracking.plots import make_plots
from vtc_lab.tracking.report import (
    HEADLINE, collect_outcomes, collect_runs, select_metrics, table_rows, to_csv, to_markdown,
    varying_params)
from vtc_lab.tracking.report_html import to_html
from vtc_lab.tracking.handle import RunHandle, client_for
from vtc_lab.tracking.lifecycle import finish_run, open_run
from vtc_lab.tracking.store import prepare


@dataclass
class ReportConfig:
    """The `report` app: which runs to compare and where the table and plots go."""

    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    """Where the runs are read from (and the report logged to); `tracking.experiment` names the
    experiment to report."""
    output_root: str = "vtc-runs"
    """Root of all outputs; the local MLflow store lives here."""
    sweep: Optional[str] = None
    """A sweep's parent run id, `latest` (the experiment's most recent sweep), or null (every
    run of the experiment except sweep parents and earlier reports)."""
    output_dir: Optional[str] = None
    """Where report.md, runs.csv and the plots go; null = `<output_root>/reports/<experiment>`
    (or `.../<experiment>/sweep-<id>`)."""
    metrics: list[str] = field(default_factory=list)
    """Metric name patterns (fnmatch) for the Markdown table; empty = the headline metrics
    (accuracy, compression, vision tokens, latency, rounds, losses). The CSV has all metrics."""
    params: list[str] = field(default_factory=list)
    """Param columns; empty = the params whose values differ between the runs."""
    max_runs: int = 1000
    """Read at most this many runs."""
    log_to_mlflow: bool = True
    """Log the report files as artifacts (`report/`) of the sweep's parent run, or of a new run
    tagged `vtc.report` in the experiment."""

    def __post_init__(self) -> None:
        if self.tracking.mode == "off":
            raise ValueError("tracking.mode=off: a report needs a tracking store to read runs from")
        if not isinstance(self.max_runs, int) or self.max_runs < 1:
            raise ValueError(f"max_runs must be an int >= 1, got {self.max_runs!r}")
        if self.sweep is not None and not (self.sweep == "latest" or self.sweep.isalnum()):
            raise ValueError(f"sweep must be a run id or 'latest', got {self.sweep!r}")


def make_report(cfg: ReportConfig) -> dict[str, float]:
    """Collect the runs, write the Markdown + CSV table, the aggregates over seeds, the paired
    comparisons and the plots; print the aggregates; log the files (and the aggregates as
    metrics) to the sweep's parent run or a report run; returns counts."""

    uri = prepare(cfg.tracking, cfg.output_root)
    assert uri is not None
    runs, parent_id, exp_id = collect_runs(uri, cfg.tracking.experiment, cfg.sweep, cfg.max_runs)
    if not runs:
        raise ValueError(f"no runs to report in experiment {cfg.tracking.experiment!r}"
                         + (f" under sweep {parent_id}" if parent_id else ""))
    sub = f"sweep-{parent_id[:8]}" if parent_id else "all"
    out = Path(cfg.output_dir or Path(cfg.output_root) / "reports" / cfg.tracking.experiment / sub)
    out.mkdir(parents=True, exist_ok=True)
    params = cfg.params or varying_params(runs)
    all_metrics = select_metrics(runs, ["*"])
    headline = select_metrics(runs, cfg.metrics or HEADLINE)
    points = eval_points(runs)
    comparisons = paired_tables(runs, collect_outcomes(uri, runs))
    plots, skipped = make_plots(runs, out)
    title = f"# Report: experiment `{cfg.tracking.experiment}`" + (
        f", sweep `{parent_id}`" if parent_id else "")
    lines = [title, "",
             f"{len(runs)} runs ({sum(r.status == 'FINISHED' for r in runs)} finished, "
             f"{sum(r.status == 'FAILED' for r in runs)} failed); store `{uri}`; "
             f"generated {time.strftime('%Y-%m-%d %H:%M:%S')}.", "",
             to_markdown(table_rows(runs, params, headline))]
    lines += ["## Over seeds: mean and 95 % confidence interval per configuration", "",
              "Runs are grouped by configuration (the swept values except the seed); each "
              "seed is one replicate. The interval is Student's t over the seeds' values "
              "(see docs/tracking.md).", "", points_markdown(points),
              "## Paired differences (same problems)", "",
              "Accuracy of A minus B on the same problems, outcomes pooled over the seeds both "
              "have (seed s of A with seed s of B, problem with problem); 95 % paired bootstrap "
              "interval and exact McNemar p-value on the discordant problems.", "",
              comparisons_markdown(comparisons), "## Plots", ""]
    lines += [f"![{p.stem}]({p.name})" for p in plots]
    if skipped:
        lines += ["", "Not plotted:"] + [f"- `{k}`: {v}" for k, v in skipped.items()]
    atomic.write_text(out / "report.md", "\n".join(lines) + "\n")
    atomic.write_text(out / "report.html", to_html(
        title.lstrip("# ").replace("`", ""), lines[2].replace("`", ""),
        table_rows(runs, params, headline), plots, skipped))
    atomic.write_text(out / "runs.csv", to_csv(table_rows(runs, params, all_metrics)))
    if cfg.log_to_mlflow:
        if parent_id:
            target = RunHandle(client_for(uri), parent_id, uri, exp_id)
        else:
            target = open_run(cfg.tracking, uri, run_name=f"report {time.strftime('%Y-%m-%d %H:%M')}",
                              tags={"vtc.report": "true"})
        for path in [out / "report.html", out / "report.md", out / "runs.csv", *plots]:
            target.log_artifact(path, "report")
        # the aggregates as metrics, at their evaluation steps: the runs table sorts by them
        for step, values in sorted(parent_metrics(points).items()):
            target.log_metrics(values, step=step)
        if not parent_id:
            finish_run(target)
    print(console_summary(points, comparisons), flush=True)
    print(f"[vtc-lab] report of {len(runs)} runs -> {out / 'report.md'}", flush=True)
    return {"report/runs": float(len(runs)), "report/plots": float(len(plots)),
            "report/configurations": float(len({p.arm.config for p in points})),
            "report/comparisons": float(len(comparisons))}
