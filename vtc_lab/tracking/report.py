"""Read runs back from MLflow for `vtc-lab report`: an experiment's runs or one sweep's children.

Kept beside the rest of the mlflow code (the only mlflow importer); tables and plots are built
from the plain `RunRecord`s returned here, so they can be tested without a store.
"""

from __future__ import annotations

import csv
import fnmatch
import io
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from typing import Any, Optional

from vtc_lab.tracking.liveness import mark_dead_runs
from vtc_lab.tracking.lifecycle import PARENT_TAG

# Headline metrics for the Markdown table (the CSV has every metric).
HEADLINE = ("*/accuracy", "*/compression_ratio", "*/context_vision_tokens_mean",
            "*/latency_mean_s", "*/rounds_mean", "data/compression_ratio",
            "data/mean_segments_per_problem", "data/samples", "val/loss", "train/loss",
            "objective", "sweep/*")
# Params that describe the run but never what is being compared.
NOISE_PARAMS = ("output_root", "tracking.*", "hparams.*", "progress", "checkpoint", "run_dir",
                "dataset_dir", "output_dir", "*.progress",
                # which trained model an eval read: differs between the seeds of one setting
                "train_run", "train.run_id",
                # the split sizes follow the seed: an outcome, not a setting to group runs by
                "train_samples", "val_samples")
CURVE_KEYS = ("train/loss", "train/loss_step", "val/loss", "train/samples_seen")
CURVE_SUFFIXES = ("/accuracy", "/read_rate", "/compression_ratio", "/context_tokens_mean")
"""Evaluation metrics whose history is read too (`eval/<benchmark>/<loop>/accuracy`, ...):
the learning curves against training samples, and every evaluation point the report
aggregates over seeds (`vtc_lab.tracking.aggregate.AGG_METRICS`)."""
CROSSOVER_PREFIX = "crossover/"
"""Metrics of experiments/perf/render_crossover.py's runs (`vtc_lab.tracking.crossover_plot`):
their histories are read, a value per repeat or per round length (the steps)."""
PREDICTIONS = (re.compile(r"^eval/predictions/([^/]+)/([^/]+)/step_(\d+)\.json$"),
               re.compile(r"^predictions/([^/]+?)__([^/]+)\.json$"))
"""Predictions tables with per-problem outcomes: the training evaluator's
(`eval/predictions/<bench>/<loop>/step_<step>.json`) and `vtc-lab eval`'s
(`predictions/<bench>__<loop>.json`, one evaluation: step 0)."""
OUTCOME_FIELD = "correct_strict"
"""The row field the headline `accuracy` is the mean of (strict extraction)."""


@dataclass
class RunRecord:
    """One run, flattened to what a comparison needs."""

    run_id: str
    name: str
    status: str
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    start_time: int = 0
    curves: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    """Metric histories (step, value) for the training-curve keys."""


class ReportInputError(ValueError):
    """The experiment or sweep asked for does not exist (the message lists what does)."""


def _record(client: Any, run: Any, with_curves: bool) -> RunRecord:
    rec = RunRecord(run_id=run.info.run_id, name=run.info.run_name or run.info.run_id[:8],
                    status=run.info.status, params=dict(run.data.params),
                    metrics=dict(run.data.metrics), tags=dict(run.data.tags),
                    start_time=run.info.start_time or 0)
    if with_curves:
        for key in [*CURVE_KEYS, *(k for k in rec.metrics
                                   if (k.startswith("eval/") and k.endswith(CURVE_SUFFIXES))
                                   or k.startswith(CROSSOVER_PREFIX))]:
            if key in rec.metrics:
                hist = client.get_metric_history(rec.run_id, key)
                rec.curves[key] = sorted((m.step, m.value) for m in hist)
    return rec


def _search(client: Any, exp_id: str, filter_string: str, max_runs: int) -> list[Any]:
    out, token = [], None
    while len(out) < max_runs:
        page = client.search_runs([exp_id], filter_string=filter_string,
                                  max_results=min(1000, max_runs - len(out)),
                                  order_by=["attributes.start_time ASC"], page_token=token)
        out.extend(page)
        token = page.token
        if not token:
            break
    return out


def collect_runs(tracking_uri: str, experiment: str, sweep: Optional[str] = None,
                 max_runs: int = 1000, with_curves: bool = True
                 ) -> tuple[list[RunRecord], Optional[str], str]:
    """(runs, parent run id or None, experiment id).

    `sweep=None`: every run of `experiment` except sweep parents and earlier reports;
    `sweep="latest"`: the children of the experiment's most recent sweep; else a parent run id.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        known = sorted(e.name for e in client.search_experiments())
        raise ReportInputError(f"MLflow experiment {experiment!r} not found in {tracking_uri}; "
                               f"known experiments: {', '.join(known) or '(none)'}")
    # runs whose process died (a killed sweep) would show as RUNNING forever: mark them first
    mark_dead_runs(client, [exp.experiment_id], "vtc-lab report")
    parent_id: Optional[str] = None
    if sweep == "latest":
        parents = client.search_runs([exp.experiment_id], filter_string="tags.`vtc.sweep` = 'true'",
                                     order_by=["attributes.start_time DESC"], max_results=1)
        if not parents:
            raise ReportInputError(f"experiment {experiment!r} has no sweep (multirun) runs in "
                                   f"{tracking_uri}")
        parent_id = parents[0].info.run_id
    elif sweep:
        try:
            parent = client.get_run(sweep)
        except MlflowException as exc:
            raise ReportInputError(f"sweep run {sweep!r} not found in {tracking_uri}") from exc
        parent_id = parent.info.run_id
        exp = client.get_experiment(parent.info.experiment_id)
    if parent_id:
        found = _search(client, exp.experiment_id, f"tags.`{PARENT_TAG}` = '{parent_id}'", max_runs)
    else:
        found = [r for r in _search(client, exp.experiment_id, "", max_runs)
                 if r.data.tags.get("vtc.sweep") != "true" and r.data.tags.get("vtc.report") != "true"]
    return [_record(client, r, with_curves) for r in found], parent_id, exp.experiment_id


def _artifact_files(client: Any, run_id: str, path: str) -> list[str]:
    out = []
    for info in client.list_artifacts(run_id, path):
        out += _artifact_files(client, run_id, info.path) if info.is_dir else [info.path]
    return out


def read_outcomes(table: dict[str, Any], where: str) -> dict[tuple[str, int], float]:
    """(problem id, sample) -> 1.0/0.0 from a predictions table as MLflow stores it
    (`{"columns": [...], "data": [[...], ...]}`); an ungraded row (null) counts as wrong."""
    cols = table.get("columns") or []
    missing = [c for c in ("problem_id", OUTCOME_FIELD) if c not in cols]
    if missing:
        raise ReportInputError(f"predictions table {where} lacks column(s) {missing}")
    pid, ok = cols.index("problem_id"), cols.index(OUTCOME_FIELD)
    sample = cols.index("sample") if "sample" in cols else None
    out = {}
    for row in table.get("data") or []:
        key = (str(row[pid]), int(row[sample]) if sample is not None else 0)
        out[key] = 1.0 if row[ok] is True else 0.0
    return out


def collect_outcomes(tracking_uri: str, runs: list[RunRecord]
                     ) -> dict[tuple[str, str, str, int], dict[tuple[str, int], float]]:
    """(run id, benchmark, loop, step) -> per-problem outcomes, from each run's predictions
    tables (both layouts in PREDICTIONS); the paired tests read these."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    out = {}
    quiet = os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"  # no bar per table
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for r in runs:
                for top in ("eval/predictions", "predictions"):
                    for path in _artifact_files(client, r.run_id, top):
                        for i, pattern in enumerate(PREDICTIONS):
                            m = pattern.match(path)
                            if m:
                                step = int(m.group(3)) if i == 0 else 0
                                local = client.download_artifacts(r.run_id, path, tmp)
                                with open(local, encoding="utf-8") as fh:
                                    table = json.load(fh)
                                out[(r.run_id, m.group(1), m.group(2), step)] = read_outcomes(
                                    table, f"{path} of run {r.run_id}")
    finally:
        if quiet is None:
            os.environ.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", None)
        else:
            os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = quiet
    return out


def norm_param(value: Optional[str]) -> Optional[str]:
    try:
        return repr(float(value)) if value is not None else None
    except ValueError:
        return value


def varying_params(runs: list[RunRecord]) -> list[str]:
    """Params whose value differs between the runs that have them (what the comparison is
    about); noise excluded, and an override (`renderer.font_size`) dropped when a short key
    param (`font_size`) carries the same values."""
    keys = sorted({k for r in runs for k in r.params})
    out = []
    for key in keys:
        if any(fnmatch.fnmatch(key, pat) for pat in NOISE_PARAMS):
            continue
        if len({norm_param(r.params[key]) for r in runs if key in r.params}) > 1:
            out.append(key)
    short = [k for k in out if "." not in k]
    return [k for k in out if "." not in k or not any(
        all(norm_param(r.params.get(k)) == norm_param(r.params.get(s)) for r in runs) for s in short)]


def select_metrics(runs: list[RunRecord], patterns: list[str] | tuple[str, ...]) -> list[str]:
    keys = sorted({k for r in runs for k in r.metrics})
    return [k for k in keys if any(fnmatch.fnmatch(k, p) for p in patterns)]


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def table_rows(runs: list[RunRecord], params: list[str], metrics: list[str]) -> list[dict[str, Any]]:
    return [{"run": r.name, "status": r.status, "run_id": r.run_id,
             **{p: r.params.get(p) for p in params}, **{m: r.metrics.get(m) for m in metrics}}
            for r in runs]


def to_markdown(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "_no runs_\n"
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in rows:
        cells = [_fmt(row[c]) if c != "run_id" else f"`{row[c][:8]}`" for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return buf.getvalue()


# ------------------------------------------------------------- the per-loop result table

EVAL_TABLE_KEYS = ("accuracy", "read_rate", "compression_ratio", "context_tokens_peak",
                   "context_tokens_mean", "round_latency_mean_s")
"""Columns of the result table printed at the end of `vtc-lab train` and of a sweep: one row
per benchmark/loop (`eval/<benchmark>/<loop>/<key>`), optical and text side by side."""


def eval_table(metrics: dict[str, Any], label: str = "", width: int = 28) -> list[str]:
    """Rows (without header) of the result table for one run's `eval/<benchmark>/<loop>/*`
    metrics, each labelled `<label> <benchmark>/<loop>` in a column `width` wide. A loop
    without rendered memory has no compression ratio (logged as 0): shown as `-`."""
    rows = sorted({k.rsplit("/", 1)[0] for k in metrics
                   if k.startswith("eval/") and k.count("/") == 3})
    lines = []
    for row in rows:
        cells = [metrics.get(f"{row}/{k}") for k in EVAL_TABLE_KEYS]
        cells = [None if k == "compression_ratio" and not c else c
                 for k, c in zip(EVAL_TABLE_KEYS, cells)]
        name = (label + " " if label else "") + row[len("eval/"):]
        lines.append(f"    {name:<{width}}" + "".join(
            f"{c:>21.4g}" if isinstance(c, (int, float)) else f"{'-':>21}" for c in cells))
    return lines


def eval_table_header(width: int = 28) -> str:
    return "    " + f"{'run benchmark/loop':<{width}}" + "".join(f"{k:>21}" for k in EVAL_TABLE_KEYS)


def sweep_summary(tracking_uri: str, experiment: str, parent_id: str) -> str:
    """The result table of a sweep's jobs (the latest evaluation of each), for the console at
    the end of a multirun: every job's loops side by side (e.g. the toy experiment's optical-
    and text-memory models), with the commands that compare them further."""
    runs, _, _ = collect_runs(tracking_uri, experiment, parent_id, with_curves=False)
    runs.sort(key=lambda r: int(r.tags.get("hydra.job.num", "0") or 0))
    lines = ["", f"=== sweep {parent_id[:8]}: {len(runs)} jobs "
                 f"({sum(r.status == 'FINISHED' for r in runs)} finished) ==="]
    width = max([28] + [len(r.name) + 24 for r in runs])
    table = [row for r in runs for row in eval_table(r.metrics, r.name, width)]
    if table:
        lines += ["  last evaluation of each job:", eval_table_header(width), *table]
    for r in runs:
        lines.append(f"  {r.name}: run {r.run_id[:8]} {r.status}")
    lines.append(f"  compare: vtc-lab report tracking.experiment={experiment} sweep={parent_id}")
    lines.append(f"  open the MLflow UI: mlflow ui --backend-store-uri {tracking_uri}")
    return "\n".join(lines)
