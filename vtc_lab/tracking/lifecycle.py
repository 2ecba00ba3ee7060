"""Opening and ending MLflow runs: experiments, provenance tags, the config as params and
artifacts, FINISHED / FAILED / KILLED, and which process rank tracks at all.

`open_run` / `finish_run` work on any run (a job's, a sweep's parent, a report's); the run an app
invocation logs into is chosen by `vtc_lab.tracking.runs.start_run`. The open runs are kept in
a `TrackingState` (`vtc_lab.tracking.state`).
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from pathlib import Path
from typing import Any, Mapping, Optional

from vtc_lab.tracking.config import TrackingConfig
from vtc_lab.tracking.handle import (NullRunHandle, RunHandle, clean_key, client_for,
                                     param_value)
from vtc_lab.tracking.provenance import key_params, provenance_tags, run_params, to_plain
from vtc_lab.tracking.state import STATE, TrackingState
from vtc_lab.tracking.store import artifact_location

log = logging.getLogger(__name__)

PARENT_TAG = "mlflow.parentRunId"
#: Experiment tag that tells the MLflow 3 UI what an experiment holds; `custom_model_development`
#: opens it on the runs table (training/eval runs) rather than the GenAI overview (traces).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"


def ensure_experiment(client: Any, name: str, uri: str) -> str:
    """Id of experiment `name`, created (with its artifacts beside a sqlite store) if missing;
    a deleted experiment of that name is restored rather than failing. The experiment is marked
    a model-development experiment (`EXPERIMENT_KIND_TAG`) unless it already says what it is."""
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(name)
    if exp is None:
        try:
            return client.create_experiment(name, artifact_location=artifact_location(uri, name),
                                            tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
        except MlflowException:  # created meanwhile by a parallel job
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise
    if exp.lifecycle_stage == "deleted":
        client.restore_experiment(exp.experiment_id)
    if EXPERIMENT_KIND_TAG not in exp.tags:  # made before vtc-lab set the kind, or by hand
        client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    return exp.experiment_id


def open_run(cfg: TrackingConfig, uri: str, *, run_name: Optional[str],
             parent_run_id: Optional[str] = None,
             tags: Optional[Mapping[str, Any]] = None,
             spool_root: Optional[str | Path] = None,
             state: Optional[TrackingState] = None) -> RunHandle:
    """Create a run (or reopen `cfg.resume_run_id`) carrying the provenance tags and the
    identity of this process (so a run left RUNNING by a killed process can be recognised).

    A reopened run first receives what an earlier attempt spooled during a tracking outage,
    then remembers its metric points so the resumed job does not log them twice. The run counts
    as open in `state` (default: the process's) until `finish_run`."""
    from vtc_lab.tracking.liveness import process_tags
    from vtc_lab.tracking.outage import QUARANTINE, flush

    client = client_for(uri)
    all_tags = {**provenance_tags(), **process_tags(), **cfg.tags, **(tags or {})}
    if parent_run_id:
        all_tags[PARENT_TAG] = parent_run_id
    if cfg.resume_run_id:
        run = client.get_run(cfg.resume_run_id)
        handle = RunHandle(client, run.info.run_id, uri, run.info.experiment_id, spool_root,
                           cfg.retry_after_s)
        flushed = flush(handle.outbox.spool_dir, handle.send_op)
        if flushed.sent:
            log.warning("run %s: %d writes spooled during an earlier tracking outage were sent",
                        handle.run_id, flushed.sent)
        if flushed.quarantined:
            log.warning("run %s: %d spooled writes could not be sent; they are kept in %s",
                        handle.run_id, len(flushed.quarantined),
                        handle.outbox.spool_dir / QUARANTINE)
        client.update_run(run.info.run_id, status="RUNNING")
        handle.load_logged_points()
        all_tags.pop(PARENT_TAG, None)  # a resumed run keeps its place in the tree
        handle.set_tags({**all_tags, "resumed_at": time.strftime("%Y-%m-%dT%H:%M:%S")})
    else:
        exp_id = ensure_experiment(client, cfg.experiment, uri)
        run = client.create_run(exp_id, run_name=run_name,
                                tags={clean_key(k): param_value(v) for k, v in all_tags.items()})
        handle = RunHandle(client, run.info.run_id, uri, exp_id, spool_root, cfg.retry_after_s)
        handle.nested = bool(parent_run_id)
    (state or STATE).opened(handle)
    return handle


def record_config(handle: RunHandle | NullRunHandle, app_cfg: Any,
                  overrides: Optional[Mapping[str, str]] = None,
                  hydra_dir: Optional[Path] = None, log_config: bool = True) -> None:
    """Key params + overrides as params (each quantity once, under its short name:
    `run_params`); the resolved config (and `.hydra/`) as artifacts."""
    if not handle.enabled:
        return
    params = dict(key_params(app_cfg)) if app_cfg is not None else {}
    params.update(run_params(overrides or {}))
    handle.log_params(params)
    if log_config and app_cfg is not None:
        log_config_text(handle, app_cfg)
    if log_config and hydra_dir is not None and Path(hydra_dir).is_dir():
        handle.log_artifact(hydra_dir, ".hydra")


def log_config_text(handle: RunHandle, app_cfg: Any) -> None:
    """The resolved config as the run's `config/config.yaml` artifact."""
    import yaml

    handle.log_text(yaml.safe_dump(to_plain(app_cfg), sort_keys=False), "config/config.yaml")


def finish_run(handle: RunHandle | NullRunHandle, error: Optional[BaseException] = None,
               state: Optional[TrackingState] = None) -> None:
    """End the run: FINISHED, or FAILED with `error/traceback.txt` (KILLED on Ctrl-C)."""
    if not handle.enabled:
        return
    status = "FINISHED"
    if error is not None:
        status = "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED"
        text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        try:
            handle.log_text(text, "error/traceback.txt")
            handle.set_tags({"error": f"{type(error).__name__}: {error}"[:500]})
        except Exception:  # noqa: BLE001 - the status below matters more than the artifact
            log.exception("could not log the traceback of run %s", handle.run_id)
    (state or STATE).closed(handle.run_id)
    handle.set_status(status)


def spool_root(output_root: str | Path) -> Path:
    """Where runs of an app writing under `output_root` spool their writes during an outage."""
    return Path(output_root).expanduser().resolve() / ".tracking-spool"


def launched_rank() -> int:
    """Rank of this process as set by a launcher (Lightning's DDP children, torchrun, Slurm)
    before any process group exists; 0 for the process the user started. Only rank 0 tracks:
    one MLflow run per job, however many processes it spans."""
    for key in ("RANK", "SLURM_PROCID"):
        if os.environ.get(key):
            return int(os.environ[key])
    return int(os.environ.get("LOCAL_RANK", 0) or 0) + int(os.environ.get("NODE_RANK", 0) or 0)
