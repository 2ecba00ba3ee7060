"""Experiment tracking: MLflow runs for every app, nested sweep runs, reports' data source.

The only sub-package that imports mlflow (lazily: importing `vtc_lab.tracking` is cheap).
Contract (docs/architecture.md): `TrackingConfig`, `resolve_tracking_uri`, `start_run` yielding a
`RunHandle` (or a no-op `NullRunHandle` when `tracking.mode=off`), `lightning_logger`.
"""

from vtc_lab.tracking.config import MODES, TrackingConfig
from vtc_lab.tracking.runs import (
    NullRunHandle,
    RunHandle,
    continue_run,
    current_job_run,
    finish_run,
    open_run,
    record_config,
    start_run,
)
from vtc_lab.tracking.lightning_logger import lightning_logger
from vtc_lab.tracking.state import TrackingState
from vtc_lab.tracking.store import (
    TrackingUnavailableError,
    check_server,
    prepare,
    prepare_store,
    resolve_tracking_uri,
)

__all__ = [
    "MODES",
    "NullRunHandle",
    "RunHandle",
    "TrackingConfig",
    "TrackingState",
    "TrackingUnavailableError",
    "check_server",
    "continue_run",
    "current_job_run",
    "finish_run",
    "lightning_logger",
    "open_run",
    "prepare",
    "prepare_store",
    "record_config",
    "resolve_tracking_uri",
    "start_run",
]
