"""Lightning's MLflow logger bound to a run handle (training's curves go where the app's run is)."""

from __future__ import annotations

from typing import Any, Mapping, Optional

from vtc_lab.tracking.handle import NullRunHandle, RunHandle
from vtc_lab.tracking.provenance import to_plain


def lightning_logger(handle: RunHandle | NullRunHandle, samples_per_step: int = 1) -> Any:
    """A Lightning `MLFlowLogger` writing into `handle`'s run (None when tracking is off).

    It never ends the run (the run's owner does, after evaluation too) and routes
    hyper-parameters through `handle.log_params`, so they cannot collide with the params
    already logged. Metrics are logged at step = training samples seen (the optimizer step x
    `samples_per_step`, the samples one optimizer step consumes on all ranks): the MLflow UI's
    charts plot against the step by default, and runs with different batch sizes or
    accumulation then line up by data seen; the in-training evaluator logs at the same step."""
    if samples_per_step < 1:
        raise ValueError(f"samples_per_step must be >= 1, got {samples_per_step}")
    if not handle.enabled:
        return None
    from lightning.pytorch.loggers import MLFlowLogger
    from lightning.pytorch.loggers.logger import rank_zero_experiment

    class _RunLogger(MLFlowLogger):
        @property  # type: ignore[override]
        @rank_zero_experiment
        def experiment(self) -> Any:
            # MLFlowLogger calls mlflow.set_tracking_uri(), which rewrites the process-wide URI
            # and MLFLOW_TRACKING_URI (inherited by every later job and subprocess: the next
            # sweep job's `tracking=server` default would silently become this sqlite file).
            # Its client has the URI explicitly, so the global state is put back through the
            # public setter: `set_tracking_uri` mirrors the URI into MLFLOW_TRACKING_URI, and
            # `set_tracking_uri(None)` clears both, so the variable says what was set before.
            import os

            import mlflow

            before = os.environ.get("MLFLOW_TRACKING_URI")
            try:
                return super().experiment
            finally:
                mlflow.set_tracking_uri(before)

        def log_hyperparams(self, params: Any) -> None:  # type: ignore[override]
            handle.log_params({"hparams": to_plain(params) if not isinstance(params, Mapping)
                               else {k: to_plain(v) for k, v in params.items()}})

        def log_metrics(self, metrics: Mapping[str, float], step: Optional[int] = None) -> None:  # type: ignore[override]
            # through the handle: outage spooling and no duplicate points in a resumed run
            handle.log_metrics({k: v for k, v in metrics.items() if not isinstance(v, str)},
                               step=None if step is None else step * samples_per_step)

        def finalize(self, status: str = "success") -> None:
            """Nothing to do: the run's owner ends the run (after evaluation too), and with
            `log_model` off (the default kept here) Lightning has no checkpoints to upload."""

    return _RunLogger(tracking_uri=handle.tracking_uri, run_id=handle.run_id)
