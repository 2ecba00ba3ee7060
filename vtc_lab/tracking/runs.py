"""MLflow runs behind a small handle: the only place (with store.py) that talks to mlflow.

Apps call `start_run(...)` and log through the `RunHandle` it yields. Inside a Hydra job the
tracking callback has already opened the job's run (nested under the sweep's parent run); then
`start_run` hands out that same run and leaves ending it to the callback, so the app code is the
same for a single run, a sweep job, a test and a notebook.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import re
import tempfile
import time
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Optional

from vtc_lab.tracking.config import TrackingConfig
from vtc_lab.tracking.provenance import flatten, key_params, provenance_tags, to_plain
from vtc_lab.tracking.store import artifact_location, prepare

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)

PARENT_TAG = "mlflow.parentRunId"
#: Experiment tag that tells the MLflow 3 UI what an experiment holds; `custom_model_development`
#: opens it on the runs table (training/eval runs) rather than the GenAI overview (traces).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
#: Dataset input contexts: what a run did with the dataset.
DATASET_CONTEXTS = ("training", "evaluation", "build")
_MAX_PARAM_VALUE = 6000
_BATCH = 100
_KEY_RE = re.compile(r"[^A-Za-z0-9_\-. :/]")

# The run the Hydra callback opened for the job running in this process (one job at a time
# per process, under every launcher).
_job_run: Optional["RunHandle"] = None
_open_runs: dict[str, "RunHandle"] = {}


def _clean_key(key: str) -> str:
    return _KEY_RE.sub("_", str(key))[:250]


def _param_value(value: Any) -> str:
    if isinstance(value, (list, dict)):
        text = json.dumps(value, ensure_ascii=False)
    else:
        text = str(value)
    return text if len(text) <= _MAX_PARAM_VALUE else text[: _MAX_PARAM_VALUE - 3] + "..."


class NullRunHandle:
    """`tracking=off`: the same methods, doing nothing, so apps never branch on the mode."""

    run_id: Optional[str] = None
    tracking_uri: Optional[str] = None
    experiment_id: Optional[str] = None
    enabled = False

    def log_params(self, params: Mapping[str, Any]) -> None: ...
    def log_metrics(self, metrics: Mapping[str, Any], step: Optional[int] = None) -> None: ...
    def log_artifact(self, path: str | Path, subdir: Optional[str] = None) -> None: ...
    def log_dict(self, obj: Any, name: str) -> None: ...
    def log_text(self, text: str, name: str) -> None: ...
    def log_image(self, image: "Image.Image", name: str) -> None: ...
    def log_table(self, rows: list[dict], name: str) -> None: ...
    def set_tags(self, tags: Mapping[str, Any]) -> None: ...
    def log_dataset(self, name: str, digest: str, source: str | Path, context: str,
                    profile: Optional[Mapping[str, Any]] = None) -> None: ...


class RunHandle:
    """One MLflow run, addressed by id through an `MlflowClient` (no global active-run state, so
    several runs — a sweep parent and its children — can be written from one process)."""

    enabled = True

    def __init__(self, client: Any, run_id: str, tracking_uri: str, experiment_id: str):
        self.client = client
        self.run_id = run_id
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id
        self._params: Optional[dict[str, str]] = None
        self.nested = False
        """True for a sweep's child run (its name is the sweep point and stays so)."""

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log (nested dicts are flattened to dotted keys). Re-logging an identical value is a
        no-op; a *different* value for an existing key (a resumed run with a changed config) is
        kept as tag `param_changed.<key>` instead, because MLflow refuses to change a param."""
        from mlflow.entities import Param

        if self._params is None:
            self._params = dict(self.client.get_run(self.run_id).data.params)
        new: dict[str, str] = {}
        changed: dict[str, str] = {}
        for key, value in flatten(params).items():
            key, text = _clean_key(key), _param_value(value)
            old = self._params.get(key, new.get(key))
            if old is None:
                new[key] = text
            elif old != text:
                changed[key] = text
        items = [Param(k, v) for k, v in new.items()]
        for i in range(0, len(items), _BATCH):
            self.client.log_batch(self.run_id, params=items[i:i + _BATCH])
        self._params.update(new)
        if changed:
            log.warning("run %s already has params %s with other values; new values kept as "
                        "param_changed.* tags", self.run_id, sorted(changed))
            self.set_tags({f"param_changed.{k}": v for k, v in changed.items()})

    def log_metrics(self, metrics: Mapping[str, Any], step: Optional[int] = None) -> None:
        """Numeric values only (tensors and numpy scalars are converted); a non-numeric value
        raises naming its key rather than disappearing."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = []
        for key, value in flatten(metrics).items():
            if value is None:
                continue
            if hasattr(value, "item"):
                value = value.item()
            if isinstance(value, bool):
                value = float(value)
            if not isinstance(value, (int, float)):
                raise TypeError(f"metric {key!r} must be a number, got {type(value).__name__} "
                                f"{value!r}")
            items.append(Metric(_clean_key(key), float(value), now, int(step or 0)))
        for i in range(0, len(items), 1000):
            self.client.log_batch(self.run_id, metrics=items[i:i + 1000])

    def log_artifact(self, path: str | Path, subdir: Optional[str] = None) -> None:
        """A file, or a directory's contents, under artifact path `subdir`."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"artifact {path} does not exist")
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path=subdir)
        else:
            self.client.log_artifact(self.run_id, str(path), artifact_path=subdir)

    def log_dict(self, obj: Any, name: str) -> None:
        """JSON, or YAML when `name` ends in .yaml/.yml."""
        self.client.log_dict(self.run_id, to_plain(obj), name)

    def log_text(self, text: str, name: str) -> None:
        self.client.log_text(self.run_id, text, name)

    def log_image(self, image: "Image.Image", name: str) -> None:
        if not Path(name).suffix:
            name += ".png"
        self.client.log_image(self.run_id, image, artifact_file=name)

    def log_table(self, rows: list[dict], name: str) -> None:
        """`.csv` -> a CSV file; otherwise an MLflow table (`.json`, viewable in the UI)."""
        import pandas as pd

        frame = pd.DataFrame([to_plain(r) for r in rows])
        if name.endswith(".csv"):
            with tempfile.TemporaryDirectory() as tmp:
                target = Path(tmp) / Path(name).name
                frame.to_csv(target, index=False)
                parent = str(Path(name).parent)
                self.client.log_artifact(self.run_id, str(target),
                                         artifact_path=None if parent == "." else parent)
            return
        if not name.endswith(".json"):
            name += ".json"
        self.client.log_table(self.run_id, data=frame, artifact_file=name)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(_clean_key(k), _param_value(v)) for k, v in tags.items()]
        for i in range(0, len(items), _BATCH):
            self.client.log_batch(self.run_id, tags=items[i:i + _BATCH])


    def log_dataset(self, name: str, digest: str, source: str | Path, context: str,
                    profile: Optional[Mapping[str, Any]] = None) -> None:
        """Record a dataset this run used as an MLflow dataset input (the runs table's Dataset
        column: filter and group runs by the data they used). `digest` identifies the content
        (a config hash or a file hash), `source` is where it lives (a local path is stored
        absolute), `profile` holds its counts; `context` says what the run did with it."""
        from mlflow.entities import Dataset, DatasetInput, InputTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        if context not in DATASET_CONTEXTS:
            raise ValueError(f"dataset context must be one of {DATASET_CONTEXTS}, got {context!r}")
        source = str(source)
        source_type = "local" if not source.startswith("<") else "code"
        if source_type == "local":
            source = str(Path(source).expanduser().resolve())
        dataset = Dataset(name=name, digest=str(digest)[:36], source_type=source_type,
                          source=json.dumps({"uri": source}),
                          profile=json.dumps(to_plain(dict(profile or {})), sort_keys=True))
        self.client.log_inputs(self.run_id, datasets=[
            DatasetInput(dataset, tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)])])


def _client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


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
             tags: Optional[Mapping[str, Any]] = None) -> RunHandle:
    """Create a run (or reopen `cfg.resume_run_id`) carrying the provenance tags."""
    client = _client(uri)
    all_tags = {**provenance_tags(), **cfg.tags, **(tags or {})}
    if parent_run_id:
        all_tags[PARENT_TAG] = parent_run_id
    if cfg.resume_run_id:
        run = client.get_run(cfg.resume_run_id)
        client.update_run(run.info.run_id, status="RUNNING")
        handle = RunHandle(client, run.info.run_id, uri, run.info.experiment_id)
        all_tags.pop(PARENT_TAG, None)  # a resumed run keeps its place in the tree
        handle.set_tags({**all_tags, "resumed_at": time.strftime("%Y-%m-%dT%H:%M:%S")})
    else:
        exp_id = ensure_experiment(client, cfg.experiment, uri)
        run = client.create_run(exp_id, run_name=run_name,
                                tags={_clean_key(k): _param_value(v) for k, v in all_tags.items()})
        handle = RunHandle(client, run.info.run_id, uri, exp_id)
        handle.nested = bool(parent_run_id)
    _open_runs[handle.run_id] = handle
    return handle


def record_config(handle: RunHandle | NullRunHandle, app_cfg: Any,
                  overrides: Optional[Mapping[str, str]] = None,
                  hydra_dir: Optional[Path] = None, log_config: bool = True) -> None:
    """Key params + overrides as params; the resolved config (and `.hydra/`) as artifacts."""
    if not handle.enabled:
        return
    params = dict(key_params(app_cfg)) if app_cfg is not None else {}
    params.update(overrides or {})
    handle.log_params(params)
    if log_config and app_cfg is not None:
        _log_config_text(handle, app_cfg)
    if log_config and hydra_dir is not None and Path(hydra_dir).is_dir():
        handle.log_artifact(hydra_dir, ".hydra")


def _log_config_text(handle: RunHandle, app_cfg: Any) -> None:
    import yaml

    handle.log_text(yaml.safe_dump(to_plain(app_cfg), sort_keys=False), "config/config.yaml")


def finish_run(handle: RunHandle | NullRunHandle, error: Optional[BaseException] = None) -> None:
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
    handle.client.set_terminated(handle.run_id, status)
    _open_runs.pop(handle.run_id, None)


@atexit.register
def _kill_open_runs() -> None:
    """A process that dies with runs still open (Ctrl-C, sys.exit in a job) marks them KILLED
    instead of leaving them RUNNING forever in the UI."""
    for handle in list(_open_runs.values()):
        try:
            handle.client.set_terminated(handle.run_id, "KILLED")
        except Exception:  # noqa: BLE001
            pass
    _open_runs.clear()


def set_job_run(handle: Optional[RunHandle]) -> None:
    """Used by the Hydra callback: the run of the job now running in this process."""
    global _job_run
    _job_run = handle


def current_job_run() -> Optional[RunHandle]:
    return _job_run


def continue_run(cfg: TrackingConfig, run_id: Optional[str]) -> None:
    """Log this job into the existing run `run_id` (e.g. training resumed from a checkpoint
    that recorded its run) instead of a new one. Sets `cfg.resume_run_id`, so `start_run`
    reopens that run; inside a Hydra job whose callback already opened a fresh run for this
    attempt, that run is tagged `superseded_by` and released, and the callback's resume path
    takes over. No-op without a run id or with tracking off."""
    if not run_id or cfg.mode == "off":
        return
    cfg.resume_run_id = run_id
    job = current_job_run()
    if job is not None and job.run_id != run_id:
        job.set_tags({"superseded_by": run_id})
        set_job_run(None)


def _swap_job_run_for_resumed(job: RunHandle, cfg: TrackingConfig, uri: str) -> RunHandle:
    """A resumed job (e.g. training continued from a checkpoint) keeps logging into its old run:
    the empty run the callback opened for this attempt is deleted and the old run reopened and
    handed to the callback to end."""
    resumed = open_run(cfg, uri, run_name=None)
    job.client.delete_run(job.run_id)
    _open_runs.pop(job.run_id, None)
    set_job_run(resumed)
    return resumed


def launched_rank() -> int:
    """Rank of this process as set by a launcher (Lightning's DDP children, torchrun, Slurm)
    before any process group exists; 0 for the process the user started. Only rank 0 tracks:
    one MLflow run per job, however many processes it spans."""
    for key in ("RANK", "SLURM_PROCID"):
        if os.environ.get(key):
            return int(os.environ[key])
    return int(os.environ.get("LOCAL_RANK", 0) or 0) + int(os.environ.get("NODE_RANK", 0) or 0)


@contextmanager
def start_run(tracking_cfg: TrackingConfig, app_cfg: Any = None,
              output_root: str | Path = "vtc-runs",
              run_name: Optional[str] = None) -> Iterator[RunHandle | NullRunHandle]:
    """The run of this app invocation. Fails fast (naming the URI) when the store is unreachable.

    Inside a Hydra job whose run the tracking callback opened: that run (the callback ends it).
    Otherwise a new run (nested under the sweep parent when inside a multirun), ended here:
    FINISHED, or FAILED with the traceback as an artifact. Ranks > 0 of a multi-process job get
    the no-op handle.
    """
    if tracking_cfg.mode == "off" or launched_rank() != 0:
        yield NullRunHandle()
        return
    uri = prepare(tracking_cfg, output_root)
    assert uri is not None
    job = current_job_run()
    if job is not None and job.tracking_uri == uri:
        if tracking_cfg.resume_run_id and tracking_cfg.resume_run_id != job.run_id:
            job = _swap_job_run_for_resumed(job, tracking_cfg, uri)
        if app_cfg is not None:
            # the effective config, as the app runs it (`eval train_run=` replaces the model and
            # renderer presets by the training run's): the callback logged only the overrides
            job.log_params(key_params(app_cfg))
            if tracking_cfg.log_config:
                _log_config_text(job, app_cfg)
        if run_name and not job.nested and not tracking_cfg.resume_run_id:
            # a single run takes the app's descriptive name (`eval-<model>-<benchmark>`); a
            # sweep child keeps the name of its sweep point
            job.client.update_run(job.run_id, name=run_name)
        yield job
        return
    from vtc_lab.tracking.sweep import hydra_job_context

    ctx = hydra_job_context(uri)
    handle = open_run(tracking_cfg, uri, run_name=run_name or tracking_cfg.run_name or ctx.name,
                      parent_run_id=ctx.parent_run_id)
    record_config(handle, app_cfg, ctx.overrides, ctx.hydra_dir, tracking_cfg.log_config)
    try:
        yield handle
    except BaseException as exc:
        finish_run(handle, exc)
        raise
    finish_run(handle)


def lightning_logger(handle: RunHandle | NullRunHandle) -> Any:
    """A Lightning `MLFlowLogger` writing into `handle`'s run (None when tracking is off).

    It never ends the run (the run's owner does, after evaluation too) and routes
    hyper-parameters through `handle.log_params`, so they cannot collide with the params
    already logged."""
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
                return MLFlowLogger.experiment.fget(self)
            finally:
                mlflow.set_tracking_uri(before)

        def log_hyperparams(self, params: Any) -> None:  # type: ignore[override]
            handle.log_params({"hparams": to_plain(params) if not isinstance(params, Mapping)
                               else {k: to_plain(v) for k, v in params.items()}})

        def finalize(self, status: str = "success") -> None:
            """Nothing to do: the run's owner ends the run (after evaluation too), and with
            `log_model` off (the default kept here) Lightning has no checkpoints to upload."""

    return _RunLogger(tracking_uri=handle.tracking_uri, run_id=handle.run_id)
