"""The run an app invocation logs into: `start_run`, the one entry point apps use.

Apps call `start_run(...)` and log through the `RunHandle` it yields. Inside a Hydra job the
tracking callback has already opened the job's run (nested under the sweep's parent run); then
`start_run` hands out that same run and leaves ending it to the callback, so the app code is the
same for a single run, a sweep job, a test and a notebook. A job that resumes an earlier run
(`continue_run`) swaps the callback's fresh run for the old one.

Split by concern: the handle and its spooled writes (`vtc_lab.tracking.handle`), opening and
ending runs (`vtc_lab.tracking.lifecycle`), what a process remembers (`vtc_lab.tracking.state`),
Lightning's logger (`vtc_lab.tracking.lightning_logger`); their public names are re-exported
here and from `vtc_lab.tracking`.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

from vtc_lab.tracking.config import TrackingConfig
from vtc_lab.tracking.handle import NullRunHandle, RunHandle
from vtc_lab.tracking.lifecycle import (PARENT_TAG, log_config_text, finish_run, launched_rank,
                                        open_run, record_config, spool_root)
from vtc_lab.tracking.provenance import key_params
from vtc_lab.tracking.state import STATE, TrackingState
from vtc_lab.tracking.store import prepare
from vtc_lab.tracking.sweep import CONFIG_KEY_TAG, JobContext, hydra_job_context

__all__ = ["NullRunHandle", "PARENT_TAG", "RunHandle", "continue_run", "current_job_run",
           "finish_run", "launched_rank", "open_run", "record_config", "set_job_run",
           "spool_root", "start_run"]


def set_job_run(handle: Optional[RunHandle], state: Optional[TrackingState] = None,
                context: Optional[JobContext] = None) -> None:
    """Used by the Hydra callback: the run of the job now running in this process, and the
    job context it was opened with (kept when a handle is swapped without one)."""
    state = state or STATE
    state.job_run = handle
    if handle is None or context is not None:
        state.job_context = context


def current_job_context(tracking_uri: str, state: Optional[TrackingState] = None) -> JobContext:
    """The context of the Hydra job running now: the one the callback opened its run with
    (computed from the job's full config), else `hydra_job_context` (which sees only the
    `hydra` node), else an empty context outside Hydra."""
    ctx = (state or STATE).job_context
    return ctx if ctx is not None else hydra_job_context(tracking_uri)


def job_config_key(tracking_uri: Optional[str]) -> Optional[str]:
    """The `vtc.config_key` of the Hydra job running now (what a training run records in its
    run.json, so evaluations of its model know its configuration); None outside Hydra or
    without a tracking store (no sweep parent to say what was swept)."""
    if not tracking_uri:
        return None
    return current_job_context(tracking_uri).tags.get(CONFIG_KEY_TAG)


def current_job_run(state: Optional[TrackingState] = None) -> Optional[RunHandle]:
    """The run the Hydra callback opened for the job running now, if any."""
    return (state or STATE).job_run


def continue_run(cfg: TrackingConfig, run_id: Optional[str],
                 state: Optional[TrackingState] = None) -> None:
    """Log this job into the existing run `run_id` (e.g. training resumed from a checkpoint
    that recorded its run) instead of a new one. Sets `cfg.resume_run_id`, so `start_run`
    reopens that run; inside a Hydra job whose callback already opened a fresh run for this
    attempt, that run is tagged `superseded_by` and released, and the callback's resume path
    takes over. No-op without a run id or with tracking off."""
    if not run_id or cfg.mode == "off":
        return
    cfg.resume_run_id = run_id
    job = current_job_run(state)
    if job is not None and job.run_id != run_id:
        job.set_tags({"superseded_by": run_id})
        set_job_run(None, state)


def _swap_job_run_for_resumed(job: RunHandle, cfg: TrackingConfig, uri: str,
                              state: TrackingState) -> RunHandle:
    """A resumed job (e.g. training continued from a checkpoint) keeps logging into its old run:
    the empty run the callback opened for this attempt is deleted and the old run reopened and
    handed to the callback to end."""
    resumed = open_run(cfg, uri, run_name=None, spool_root=job.outbox.spool_dir.parent,
                       state=state)
    job.client.delete_run(job.run_id)
    state.closed(job.run_id)
    set_job_run(resumed, state)
    return resumed


@contextmanager
def start_run(tracking_cfg: TrackingConfig, app_cfg: Any = None,
              output_root: str | Path = "vtc-runs",
              run_name: Optional[str] = None,
              state: Optional[TrackingState] = None) -> Iterator[RunHandle | NullRunHandle]:
    """The run of this app invocation. Fails fast (naming the URI) when the store is unreachable.

    Inside a Hydra job whose run the tracking callback opened: that run (the callback ends it).
    Otherwise a new run (nested under the sweep parent when inside a multirun), ended here:
    FINISHED, or FAILED with the traceback as an artifact. Ranks > 0 of a multi-process job get
    the no-op handle. `state`: whose job run and open runs (default: the process's).
    """
    if tracking_cfg.mode == "off" or launched_rank() != 0:
        yield NullRunHandle()
        return
    uri = prepare(tracking_cfg, output_root)
    assert uri is not None
    state = state or STATE
    job = current_job_run(state)
    if job is not None and job.tracking_uri == uri:
        if tracking_cfg.resume_run_id and tracking_cfg.resume_run_id != job.run_id:
            job = _swap_job_run_for_resumed(job, tracking_cfg, uri, state)
        if app_cfg is not None:
            # the effective config, as the app runs it (`eval train_run=` replaces the model and
            # renderer presets by the training run's): the callback logged only the overrides
            job.log_params(key_params(app_cfg))
            if tracking_cfg.log_config:
                log_config_text(job, app_cfg)
        if run_name and not job.nested and not tracking_cfg.resume_run_id:
            # a single run takes the app's descriptive name (`eval-<model>-<benchmark>`); a
            # sweep child keeps the name of its sweep point
            job.client.update_run(job.run_id, name=run_name)
        yield job
        return
    ctx = hydra_job_context(uri)
    handle = open_run(tracking_cfg, uri, run_name=run_name or tracking_cfg.run_name or ctx.name,
                      parent_run_id=ctx.parent_run_id, tags=ctx.tags,
                      spool_root=spool_root(output_root), state=state)
    record_config(handle, app_cfg, ctx.overrides, ctx.hydra_dir, tracking_cfg.log_config)
    try:
        yield handle
    except BaseException as exc:
        finish_run(handle, exc, state)
        raise
    finish_run(handle, state=state)
