"""Hydra callback: one MLflow run per job, and a parent run per multirun sweep.

Enabled for every app in `conf/common.yaml`. The order of events:
- `on_run_start` / `on_multirun_start` (launching process): resolve + prepare the store (sqlite:
  migrate once, under a lock, before parallel jobs touch it; server: fail now, naming the URI).
  A multirun also opens the parent run and publishes its id in `<sweep dir>/.tracking/`.
- `on_job_start` (the job's own process, under any launcher): open the job's run, nested under
  the parent; log overrides, key params, config and `.hydra/`.
  Apps reach it through `vtc_lab.tracking.start_run`. A sweep job's run is named by its swept
  values (`optical`, `text-s1`: `sweep.run_name`) and tagged `vtc.seed` / `vtc.config_key`.
- `on_job_end`: FINISHED, or FAILED with the traceback artifact; count it on the parent.
- `on_multirun_end` (or process exit, when Hydra aborts the sweep after a failed job): close the
  parent with the finished/failed counts.

The callback object is pickled to joblib/submitit workers, so it keeps no clients or handles;
per-process state lives in module globals.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import logging
import os
import sys
from pathlib import Path
from typing import Any, Optional

from hydra.core.utils import JobReturn, JobStatus
from hydra.types import RunMode
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from vtc_lab.tracking import liveness, runs, sweep
from vtc_lab.tracking.config import TrackingConfig
from vtc_lab.tracking.handle import client_for
from vtc_lab.tracking.provenance import short_name
from vtc_lab.tracking.state import STATE  # its `parents`: sweep dir -> open parent run
from vtc_lab.tracking.store import TrackingUnavailableError, prepare

log = logging.getLogger(__name__)

def _tracking_config(config: DictConfig) -> Optional[TrackingConfig]:
    """The job's TrackingConfig, or None when the app has no tracking node."""
    node = config.get("tracking")
    if node is None:
        return None
    data = OmegaConf.to_container(node, resolve=True)
    assert isinstance(data, dict)
    return TrackingConfig(**data)


def _tracking(config: DictConfig) -> tuple[Optional[TrackingConfig], Optional[str]]:
    """The job's TrackingConfig and prepared URI, or (None, None) when off / not configured."""
    cfg = _tracking_config(config)
    if cfg is None or cfg.mode == "off":
        return None, None
    return cfg, prepare(cfg, str(config.get("output_root", "vtc-runs")))


def _tracking_or_exit(config: DictConfig) -> tuple[Optional[TrackingConfig], Optional[str]]:
    """`_tracking`, but a bad tracking config or an unreachable store stops the whole command
    here, before any job starts. Hydra turns callback exceptions into warnings and carries on,
    so this exits instead (SystemExit is not an Exception and passes through)."""
    try:
        return _tracking(config)
    except (TrackingUnavailableError, ValueError, TypeError) as exc:
        print(f"vtc-lab: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    except OSError as exc:  # the store's directory cannot be made (read-only, full, a file)
        print(f"vtc-lab: cannot create the MLflow store: {exc}", file=sys.stderr)
        raise SystemExit(1) from exc


def _config_problem(config: DictConfig) -> Optional[str]:
    """The app config's validation error (unknown keys, non-finite numbers, schema checks), or
    None; None too when it cannot be judged yet (an interpolation that resolves in the job)."""
    from omegaconf.errors import InterpolationResolutionError

    from vtc_lab.configcheck import validate

    try:
        validate(config)
    except InterpolationResolutionError:
        return None
    except (ValueError, TypeError) as exc:
        return str(exc)
    return None


def _config_or_exit(config: DictConfig) -> None:
    """A single run with a bad config stops here: one message, exit 2, nothing created."""
    from vtc_lab.configcheck import ConfigError

    problem = _config_problem(config)
    if problem is not None:
        if os.environ.get("VTC_LAB_DEBUG", "") not in ("", "0"):
            raise ConfigError(problem)
        print(f"vtc-lab: {problem}", file=sys.stderr)
        raise SystemExit(2)


def job_choices(config: DictConfig) -> str:
    """One line saying what this job runs: the app, its group presets (model=..., trainer=...),
    the other overrides and where its outputs go; logged once at the start of every job, so a
    log file or a sweep's output says which config each job resolved to."""
    choices = config.hydra.runtime.choices
    picked = [f"{g}={o}" for g, o in choices.items()
              if o is not None and not str(g).startswith("hydra/")]
    groups = {str(g) for g in choices}
    extra = [o for o in config.hydra.overrides.task
             if o.split("=", 1)[0].lstrip("+~") not in groups]
    return (f"vtc-lab {config.hydra.job.name}: {' '.join(picked + extra)} "
            f"(outputs: {config.hydra.runtime.output_dir})")


class TrackingCallback(Callback):
    """See the module docstring. `job_runs=false` (the report app) skips per-job runs."""

    def __init__(self, job_runs: bool = True) -> None:
        self.job_runs = job_runs

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _config_or_exit(config)  # before the store, the run directory or any run exists
        _tracking_or_exit(config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        cfg, uri = _tracking_or_exit(config)
        if cfg is None or uri is None or not self.job_runs:
            return
        _mark_dead_runs(cfg, uri)
        sweep_dir = str(config.hydra.sweep.dir)
        swept = sweep.task_overrides(config)
        for key, values in (config.hydra.sweeper.get("params") or {}).items():
            swept.setdefault(str(key), str(values))  # a preset's sweep (experiment=toy)
        spec = " ".join(f"{k}={v}" for k, v in swept.items())
        name = cfg.run_name or f"sweep {config.hydra.job.name}: {spec}"
        parent = runs.open_run(cfg, uri, run_name=name[:250],
                               tags={"vtc.sweep": "true", "sweep.dir": sweep_dir,
                                     "app": str(config.hydra.job.name)},
                               spool_root=_spool_root(config))
        # the parent's params name each swept quantity by its short name (`sweep.memory`)
        parent.log_params({f"sweep.{short_name(k)}": v for k, v in swept.items()})
        sweep.write_parent(sweep_dir, parent.run_id, uri, parent.experiment_id,
                           sweep.swept_keys(config))
        STATE.parents[sweep_dir] = parent
        atexit.register(_close_parent, sweep_dir, False)
        log.info("MLflow sweep parent run %s (%s)", parent.run_id, uri)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = str(config.hydra.sweep.dir)
        parent = STATE.parents.get(sweep_dir)
        _close_parent(sweep_dir, True)
        if parent is not None:
            _report_sweep(config, parent)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        runs.set_job_run(None)
        if runs.launched_rank() == 0:  # DDP children re-run the job: said once
            log.info("%s", job_choices(config))
        if not self.job_runs or runs.launched_rank() != 0:
            return
        if _config_problem(config) is not None:
            return  # no run for a job whose config is wrong: the job fails with the message
        cfg, uri = _tracking(config)
        if cfg is None or uri is None:
            return
        ctx = sweep.job_context(config, uri)
        name = cfg.run_name or ctx.name or str(config.hydra.job.name)
        tags = {"app": str(config.hydra.job.name),
                "hydra.output_dir": str(config.hydra.runtime.output_dir), **ctx.tags}
        if ctx.job_num is not None:
            tags["hydra.job.num"] = str(ctx.job_num)
        handle = runs.open_run(cfg, uri, run_name=name[:250], parent_run_id=ctx.parent_run_id,
                               tags=tags, spool_root=_spool_root(config))
        runs.set_job_run(handle, context=ctx)  # from here on the app logs into this run
        try:
            # overrides (what was asked) and .hydra/ only: the key params and config.yaml come
            # from the app's effective config when it opens the run (`start_run`), so a value
            # the app derives (eval train_run=) is logged once, as run
            runs.record_config(handle, None, ctx.overrides, ctx.hydra_dir, cfg.log_config)
        except Exception:  # noqa: BLE001 - a missing param must not cost the job its run
            log.exception("could not log the config of run %s", handle.run_id)

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        handle = runs.current_job_run()
        runs.set_job_run(None)
        error = None
        if job_return.status == JobStatus.FAILED:
            # The public getter re-raises the job's exception (after printing the message Hydra
            # prints again itself when the launcher reads it: silenced here, not duplicated).
            try:
                with contextlib.redirect_stderr(io.StringIO()):
                    job_return.return_value
            except BaseException as err:  # noqa: BLE001 - recorded on the run, not handled
                error = err
        if handle is None:
            # a job refused for its config has no run of its own; its sweep still counts it
            if error is not None and self.job_runs and config.hydra.mode == RunMode.MULTIRUN:
                try:
                    cfg, uri = _tracking(config)
                except Exception:  # noqa: BLE001
                    cfg = uri = None
                if cfg is not None and uri is not None:
                    parent = runs.RunHandle(client_for(uri), "", uri, "", _spool_root(config))
                    _count_job(config, parent, error)
            return
        if error is None:
            value = job_return.return_value
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                handle.log_metrics({"objective": value})
        runs.finish_run(handle, error)
        if config.hydra.mode == RunMode.MULTIRUN:
            _count_job(config, handle, error)


def _report_sweep(config: DictConfig, parent: runs.RunHandle) -> None:
    """At the end of a sweep: print its result table and write `vtc-lab report sweep=<id>`
    (table, plots incl. the learning curves) into the parent run's artifacts, so the sweep is
    compared in the MLflow UI without another command. Neither may fail a finished sweep."""
    cfg = _tracking_config(config)
    assert cfg is not None  # a sweep parent exists only for a tracked app
    try:
        from vtc_lab.tracking.report import sweep_summary

        print(sweep_summary(parent.tracking_uri, cfg.experiment, parent.run_id), flush=True)
    except Exception:  # noqa: BLE001
        log.exception("could not print the sweep's result table")
    try:  # the runs table opens on the headline columns (see tracking/ui_view.py)
        from vtc_lab.tracking.ui_view import experiment_url, publish_runs_view

        children = parent.client.search_runs(
            [parent.experiment_id], f"tags.`{runs.PARENT_TAG}` = '{parent.run_id}'")
        view = publish_runs_view(parent.client, parent.experiment_id, children)
        print("  runs table with the headline columns, once `mlflow ui` serves the store: "
              + experiment_url("http://127.0.0.1:5000", parent.experiment_id, view), flush=True)
    except Exception:  # noqa: BLE001
        log.exception("could not save the experiment's headline view")
    try:
        from vtc_lab.tracking.report_app import ReportConfig, make_report

        make_report(ReportConfig(tracking=cfg, output_root=str(config.get("output_root", "vtc-runs")),
                                 sweep=parent.run_id))
    except Exception:  # noqa: BLE001
        log.exception("could not write the sweep's report")


def _count_job(config: DictConfig, handle: runs.RunHandle, error: Optional[BaseException]) -> None:
    """Count an ended job on its sweep's parent run (FINISHED/FAILED counters per step)."""
    sweep_dir = str(config.hydra.sweep.dir)
    parent_id = sweep.read_parent(sweep_dir, handle.tracking_uri)
    if not parent_id:
        return
    status = "FAILED" if error is not None else "FINISHED"
    job = str(config.hydra.job.override_dirname or f"job-{config.hydra.job.num}")
    counts = sweep.record_job(sweep_dir, job, status)
    done = counts["finished"] + counts["failed"]
    parent = runs.RunHandle(handle.client, parent_id, handle.tracking_uri, handle.experiment_id,
                            handle.outbox.spool_dir.parent)
    parent.log_metrics({"sweep/jobs_finished": counts["finished"],
                        "sweep/jobs_failed": counts["failed"]}, step=done)


def _spool_root(config: DictConfig) -> Path:
    return runs.spool_root(str(config.get("output_root", "vtc-runs")))


def _mark_dead_runs(cfg: TrackingConfig, uri: str) -> None:
    """A sweep killed earlier left its parent and children RUNNING: this sweep marks them."""
    try:
        client = client_for(uri)
        exp = client.get_experiment_by_name(cfg.experiment)
        if exp is not None:
            liveness.mark_dead_runs(client, [exp.experiment_id], "the next sweep")
    except Exception:  # noqa: BLE001 - bookkeeping of old runs must not stop a new sweep
        log.exception("could not check for runs left RUNNING by dead processes")


def _close_parent(sweep_dir: str, completed: bool) -> None:
    """End the sweep's parent run once: FINISHED when every job finished, else FAILED."""
    parent = STATE.parents.pop(sweep_dir, None)
    if parent is None:
        return
    try:
        counts = sweep.read_jobs(sweep_dir)
        total = counts["finished"] + counts["failed"]
        parent.log_metrics({"sweep/jobs_finished": counts["finished"],
                            "sweep/jobs_failed": counts["failed"],
                            "sweep/jobs_total": total}, step=total)
        parent.set_tags({"sweep.failed_jobs": ",".join(counts["failed_jobs"]) or "-",
                         "sweep.completed": str(completed).lower()})
        for name in ("multirun.yaml", "optimization_results.yaml"):  # the latter: optuna
            if (Path(sweep_dir) / name).is_file():
                parent.log_artifact(Path(sweep_dir) / name, "config")
        status = "FINISHED" if counts["failed"] == 0 and completed else "FAILED"
        STATE.closed(parent.run_id)
        parent.set_status(status)
        print(f"[vtc-lab] MLflow sweep run {parent.run_id}: {counts['finished']} finished, "
              f"{counts['failed']} failed ({parent.tracking_uri})")
    except Exception:  # noqa: BLE001 - never mask the sweep's own outcome
        log.exception("could not close the MLflow parent run of sweep %s", sweep_dir)
