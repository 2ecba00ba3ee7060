"""The handle apps log through: one MLflow run addressed by id (`RunHandle`), or nothing at all
(`NullRunHandle`, `tracking=off`).

Every write of a handle goes through its outbox (`vtc_lab.tracking.outage.Outbox`): during a
store outage writes are spooled beside the outputs and sent later, never lost; `send_op` is
the one place that turns a spooled write into MLflow calls. Opening and ending runs is
`vtc_lab.tracking.lifecycle`; which run a Hydra job logs into is `vtc_lab.tracking.runs`.
"""

from __future__ import annotations

import json
import logging
import math
import re
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional

from vtc_lab.tracking.provenance import flatten, to_plain

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)

#: Dataset input contexts: what a run did with the dataset.
DATASET_CONTEXTS = ("training", "evaluation", "build")
_MAX_PARAM_VALUE = 6000
_BATCH = 100
_KEY_RE = re.compile(r"[^A-Za-z0-9_\-. :/]")


def client_for(uri: str) -> Any:
    """An `MlflowClient` bound to `uri` (no process-wide tracking URI is set or read)."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def clean_key(key: str) -> str:
    return _KEY_RE.sub("_", str(key))[:250]


def param_value(value: Any) -> str:
    if isinstance(value, (list, dict)):
        text = json.dumps(value, ensure_ascii=False)
    else:
        text = str(value)
    return text if len(text) <= _MAX_PARAM_VALUE else text[: _MAX_PARAM_VALUE - 3] + "..."



def same_param(old: str, new: str) -> bool:
    """Whether two logged param texts hold the same value: equal strings, or equal once read
    as YAML (JSON is YAML), so a command-line override `[optical]` and the app's `["optical"]`,
    or `7` and `7.0`, are one value and not a "changed" param."""
    if old == new:
        return True
    import yaml

    try:
        return yaml.safe_load(old) == yaml.safe_load(new)
    except yaml.YAMLError:
        return False

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
            key, text = clean_key(key), param_value(value)
            old = self._params.get(key, new.get(key))
            if old is None:
                new[key] = text
            elif not same_param(old, text):
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
            key, at = clean_key(key), int(step or 0)
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
        items = {clean_key(k): param_value(v) for k, v in tags.items()}
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
