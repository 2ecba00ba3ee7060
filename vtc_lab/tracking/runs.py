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
import math
import os
import re
import tempfile
import time
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Optional

from vtc_lab.tracking.config import TrackingConfig
from vtc_lab.tracking.provenance import flatten, key_params, provenance_tags, run_params, to_plain
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
    def set_status(self, status: str) -> None: ...


class RunHandle:
    """One MLflow run, addressed by id through an `MlflowClient` (no global active-run state, so
    several runs — a sweep parent and its children — can be written from one process)."""

    enabled = True

    def __init__(self, client: Any, run_id: str, tracking_uri: str, experiment_id: str,
                 spool_root: Optional[str | Path] = None, retry_after_s: float = 30.0):
        from vtc_lab.tracking.outage import Outbox

        self.client = client
        self.run_id = run_id
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id
        self._params: Optional[dict[str, str]] = None
        self.nested = False
        """True for a sweep's child run (its name is the sweep point and stays so)."""
        self.outbox = Outbox(run_id, tracking_uri, self.send_op,
                             Path(spool_root or default_spool_root()) / run_id, retry_after_s)
        """Every write goes through it: during a store outage writes are spooled, not lost."""
        self.logged_points: Optional[dict[str, dict[int, float]]] = None
        """Metric points already in the run when it was reopened (key -> step -> value): a
        resumed job re-runs the steps after its checkpoint, and re-logging them would put two
        rows per step into the curves."""

    # -- the one place that writes to MLflow -------------------------------------------------
    def send_op(self, op: dict) -> None:
        """Perform one write (`op` as spooled by the outbox) against the store."""
        from mlflow.entities import Metric, Param, RunTag

        kind = op["op"]
        if kind == "metrics":
            items = [Metric(k, v, ts, step) for k, v, ts, step in op["items"]]
            for i in range(0, len(items), 1000):
                self.client.log_batch(self.run_id, metrics=items[i:i + 1000])
        elif kind == "params":
            items = [Param(k, v) for k, v in op["items"].items()]
            for i in range(0, len(items), _BATCH):
                self.client.log_batch(self.run_id, params=items[i:i + _BATCH])
        elif kind == "tags":
            items = [RunTag(k, v) for k, v in op["items"].items()]
            for i in range(0, len(items), _BATCH):
                self.client.log_batch(self.run_id, tags=items[i:i + _BATCH])
        elif kind == "artifact":
            if Path(op["path"]).is_dir():
                self.client.log_artifacts(self.run_id, op["path"], artifact_path=op.get("subdir"))
            else:
                self.client.log_artifact(self.run_id, op["path"], artifact_path=op.get("subdir"))
        elif kind == "status":
            self.client.set_terminated(self.run_id, op["status"])
        elif kind == "dataset":
            from mlflow.entities import Dataset, DatasetInput, InputTag
            from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

            dataset = Dataset(name=op["name"], digest=op["digest"], source_type=op["source_type"],
                              source=json.dumps({"uri": op["source"]}),
                              profile=json.dumps(op["profile"], sort_keys=True))
            self.client.log_inputs(self.run_id, datasets=[
                DatasetInput(dataset, tags=[InputTag(MLFLOW_DATASET_CONTEXT, op["context"])])])
        else:
            raise ValueError(f"unknown tracking write {kind!r}")

    def _artifact(self, name: str, write_direct: Any, write_file: Any) -> None:
        """In-memory artifacts go straight to MLflow's helpers; while degraded they become a
        file in the spool (uploaded under the same name on resync)."""
        if not self.outbox.degraded:
            from vtc_lab.tracking.outage import is_outage

            try:
                write_direct()
                return
            except Exception as exc:  # noqa: BLE001
                if not is_outage(exc):
                    raise
                self.outbox.enter_degraded(exc)
        path = self.outbox.stage_file(write_file, name)
        parent = str(Path(name).parent)
        self.outbox.deliver({"op": "artifact", "path": str(path),
                             "subdir": None if parent == "." else parent})

    # -- public logging API -------------------------------------------------------------------
    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log (nested dicts are flattened to dotted keys). Re-logging an identical value is a
        no-op; a *different* value for an existing key (a resumed run with a changed config) is
        kept as tag `param_changed.<key>` instead, because MLflow refuses to change a param."""
        if self._params is None:
            self._params = self._read_params()
        new: dict[str, str] = {}
        changed: dict[str, str] = {}
        for key, value in flatten(params).items():
            key, text = _clean_key(key), _param_value(value)
            old = self._params.get(key, new.get(key))
            if old is None:
                new[key] = text
            elif old != text:
                changed[key] = text
        if new:
            self.outbox.deliver({"op": "params", "items": new})
        self._params.update(new)
        if changed:
            log.warning("run %s already has params %s with other values; new values kept as "
                        "param_changed.* tags", self.run_id, sorted(changed))
            self.set_tags({f"param_changed.{k}": v for k, v in changed.items()})

    def _read_params(self) -> dict[str, str]:
        from vtc_lab.tracking.outage import is_outage

        try:
            return dict(self.client.get_run(self.run_id).data.params)
        except Exception as exc:  # noqa: BLE001
            if not is_outage(exc):
                raise
            return {}

    def load_logged_points(self) -> None:
        """Remember the metric points the run already has (called when a run is reopened)."""
        run = self.client.get_run(self.run_id)
        self.logged_points = {
            key: {m.step: m.value for m in self.client.get_metric_history(self.run_id, key)}
            for key in run.data.metrics}

    def log_metrics(self, metrics: Mapping[str, Any], step: Optional[int] = None) -> None:
        """Numeric values only (tensors and numpy scalars are converted); a non-numeric value
        raises naming its key rather than disappearing. In a reopened run, a point the run
        already holds at that step is not logged again (a resumed job replays the steps after
        its checkpoint); at step 0, only an identical value counts as already there (a summary
        value logged without a step is new when it changed)."""
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
            key, at = _clean_key(key), int(step or 0)
            seen = (self.logged_points or {}).get(key, {})
            if at in seen and (at > 0 or seen[at] == float(value)
                               or (math.isnan(seen[at]) and math.isnan(float(value)))):
                continue
            items.append([key, float(value), now, at])
        if items:
            self.outbox.deliver({"op": "metrics", "items": items})

    def log_artifact(self, path: str | Path, subdir: Optional[str] = None) -> None:
        """A file, or a directory's contents, under artifact path `subdir`."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"artifact {path} does not exist")
        self.outbox.deliver({"op": "artifact", "path": str(path), "subdir": subdir})

    def log_dict(self, obj: Any, name: str) -> None:
        """JSON, or YAML when `name` ends in .yaml/.yml."""
        def to_file(target: Path) -> None:
            import yaml

            plain = to_plain(obj)
            target.write_text(yaml.safe_dump(plain) if name.endswith((".yaml", ".yml"))
                              else json.dumps(plain, indent=2), encoding="utf-8")

        self._artifact(name, lambda: self.client.log_dict(self.run_id, to_plain(obj), name), to_file)

    def log_text(self, text: str, name: str) -> None:
        self._artifact(name, lambda: self.client.log_text(self.run_id, text, name),
                       lambda target: target.write_text(text, encoding="utf-8"))

    def log_image(self, image: "Image.Image", name: str) -> None:
        if not Path(name).suffix:
            name += ".png"
        self._artifact(name, lambda: self.client.log_image(self.run_id, image, artifact_file=name),
                       lambda target: image.save(target))

    def log_table(self, rows: list[dict], name: str) -> None:
        """`.csv` -> a CSV file; otherwise an MLflow table (`.json`, viewable in the UI; a table
        written during a tracking outage is uploaded later as a plain JSON file)."""
        import pandas as pd

        frame = pd.DataFrame([to_plain(r) for r in rows])
        if name.endswith(".csv"):
            with tempfile.TemporaryDirectory() as tmp:
                target = Path(tmp) / Path(name).name
                frame.to_csv(target, index=False)
                parent = str(Path(name).parent)
                self.log_artifact(target, None if parent == "." else parent)
            return
        if not name.endswith(".json"):
            name += ".json"
        self._artifact(name, lambda: self.client.log_table(self.run_id, data=frame, artifact_file=name),
                       lambda target: frame.to_json(target, orient="split"))

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        items = {_clean_key(k): _param_value(v) for k, v in tags.items()}
        if items:
            self.outbox.deliver({"op": "tags", "items": items})

    def log_dataset(self, name: str, digest: str, source: str | Path, context: str,
                    profile: Optional[Mapping[str, Any]] = None) -> None:
        """Record a dataset this run used as an MLflow dataset input (the runs table's Dataset
        column: filter and group runs by the data they used). `digest` identifies the content
        (a config hash or a file hash), `source` is where it lives (a local path is stored
        absolute), `profile` holds its counts; `context` says what the run did with it."""
        if context not in DATASET_CONTEXTS:
            raise ValueError(f"dataset context must be one of {DATASET_CONTEXTS}, got {context!r}")
        source = str(source)
        source_type = "local" if not source.startswith("<") else "code"
        if source_type == "local":
            source = str(Path(source).expanduser().resolve())
        self.outbox.deliver({"op": "dataset", "name": name, "digest": str(digest)[:36],
                             "source_type": source_type, "source": source, "context": context,
                             "profile": to_plain(dict(profile or {}))})

    def set_status(self, status: str) -> None:
        """End the run with `status` (spooled like any write during an outage)."""
        self.outbox.deliver({"op": "status", "status": status})
        self.outbox.close()


def default_spool_root() -> Path:
    """Where a run's writes wait during an outage when the app named no output root."""
    return Path(tempfile.gettempdir()) / "vtc-lab-tracking-spool"


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
             tags: Optional[Mapping[str, Any]] = None,
             spool_root: Optional[str | Path] = None) -> RunHandle:
    """Create a run (or reopen `cfg.resume_run_id`) carrying the provenance tags and the
    identity of this process (so a run left RUNNING by a killed process can be recognised).

    A reopened run first receives what an earlier attempt spooled during a tracking outage,
    then remembers its metric points so the resumed job does not log them twice."""
    from vtc_lab.tracking.liveness import process_tags
    from vtc_lab.tracking.outage import QUARANTINE, flush

    client = _client(uri)
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
                                tags={_clean_key(k): _param_value(v) for k, v in all_tags.items()})
        handle = RunHandle(client, run.info.run_id, uri, exp_id, spool_root, cfg.retry_after_s)
        handle.nested = bool(parent_run_id)
    _open_runs[handle.run_id] = handle
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
    _open_runs.pop(handle.run_id, None)
    handle.set_status(status)


@atexit.register
def _kill_open_runs() -> None:
    """A process that dies with runs still open (Ctrl-C, sys.exit in a job) marks them KILLED
    instead of leaving them RUNNING forever in the UI."""
    for handle in list(_open_runs.values()):
        try:
            handle.set_status("KILLED")
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


def spool_root(output_root: str | Path) -> Path:
    """Where runs of an app writing under `output_root` spool their writes during an outage."""
    return Path(output_root).expanduser().resolve() / ".tracking-spool"


def _swap_job_run_for_resumed(job: RunHandle, cfg: TrackingConfig, uri: str) -> RunHandle:
    """A resumed job (e.g. training continued from a checkpoint) keeps logging into its old run:
    the empty run the callback opened for this attempt is deleted and the old run reopened and
    handed to the callback to end."""
    resumed = open_run(cfg, uri, run_name=None, spool_root=job.outbox.spool_dir.parent)
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
                      parent_run_id=ctx.parent_run_id, tags=ctx.tags,
                      spool_root=spool_root(output_root))
    record_config(handle, app_cfg, ctx.overrides, ctx.hydra_dir, tracking_cfg.log_config)
    try:
        yield handle
    except BaseException as exc:
        finish_run(handle, exc)
        raise
    finish_run(handle)


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
