"""Sweep bookkeeping shared by the launching process and the job processes, through files.

Under the joblib or submitit launchers a job runs in another process (or machine), so the parent
run id and the finished/failed counters travel through small files in the sweep directory
(`<sweep dir>/.tracking/`), guarded by a file lock; no environment variables or globals that a
reused worker process could carry over from an earlier sweep.
"""

from __future__ import annotations

import fcntl
import json
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

from vtc_lab import atomic
from vtc_lab.tracking.provenance import KEY_PARAMS, override_params, short_name

STATE_DIR = ".tracking"
PARENT_FILE = "parent.json"
JOBS_FILE = "jobs.json"
SEED_TAG = "vtc.seed"
"""Run tag: the job's seed (its `seed` key param), so runs of one configuration are told apart."""
CONFIG_KEY_TAG = "vtc.config_key"
"""Run tag: the swept values except the seed (`memory=optical`), so the runs of one
configuration group together across seeds; `default` for a run outside a sweep."""
SINGLE_RUN_CONFIG_KEY = "default"


def state_dir(sweep_dir: str | Path) -> Path:
    return Path(sweep_dir) / STATE_DIR


def raw_overrides(config: Any) -> list[str]:
    """The task overrides as typed, unresolved: an override value may itself be an
    interpolation (`optim.max_steps=${hydra:job.num}`) that only resolves inside a job."""
    from omegaconf import OmegaConf

    return [str(o) for o in OmegaConf.to_container(config.hydra.overrides.task, resolve=False)]


def swept_keys(config: Any) -> list[str]:
    """Keys the sweep varies: command-line sweep overrides (`a=1,2`, `range(...)`) plus the
    sweeper's `params` (experiment presets, optuna search spaces)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    keys: list[str] = []
    parsed = OverridesParser.create().parse_overrides(raw_overrides(config))
    for override in parsed:
        if override.is_sweep_override():
            keys.append(override.get_key_element().lstrip("+~"))
    params = config.hydra.sweeper.get("params") or {}
    keys += [str(k) for k in params if str(k) not in keys]
    return keys


def write_parent(sweep_dir: str | Path, run_id: str, tracking_uri: str, experiment_id: str,
                 keys: Optional[list[str]] = None) -> None:
    """Atomically publish the parent run for the jobs (temp file + rename)."""
    folder = state_dir(sweep_dir)
    folder.mkdir(parents=True, exist_ok=True)
    atomic.write_json(folder / PARENT_FILE, {"run_id": run_id, "tracking_uri": tracking_uri,
                                             "experiment_id": experiment_id,
                                             "swept_keys": keys or []})
    (folder / JOBS_FILE).unlink(missing_ok=True)


def _parent_data(sweep_dir: str | Path, tracking_uri: str) -> dict[str, Any]:
    path = state_dir(sweep_dir) / PARENT_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if data.get("tracking_uri") == tracking_uri else {}


def read_parent(sweep_dir: str | Path, tracking_uri: str) -> Optional[str]:
    """The sweep's parent run id, if it was created for this same tracking store."""
    return _parent_data(sweep_dir, tracking_uri).get("run_id")


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def record_job(sweep_dir: str | Path, job: str, status: str) -> dict[str, Any]:
    """Count one ended job (`status` FINISHED or FAILED); returns the updated counters."""
    path = state_dir(sweep_dir) / JOBS_FILE
    with _locked(path):
        counts = read_jobs(sweep_dir)
        counts["finished" if status == "FINISHED" else "failed"] += 1
        if status != "FINISHED":
            counts["failed_jobs"].append(job)
        atomic.write_json(path, counts)
    return counts


def read_jobs(sweep_dir: str | Path) -> dict[str, Any]:
    try:
        data = json.loads((state_dir(sweep_dir) / JOBS_FILE).read_text())
    except (OSError, ValueError):
        data = {}
    return {"finished": int(data.get("finished", 0)), "failed": int(data.get("failed", 0)),
            "failed_jobs": list(data.get("failed_jobs", []))}


@dataclass
class JobContext:
    """What a run needs to know about the Hydra job it belongs to (empty outside Hydra)."""

    name: Optional[str] = None
    overrides: dict[str, str] = field(default_factory=dict)
    hydra_dir: Optional[Path] = None
    parent_run_id: Optional[str] = None
    sweep_dir: Optional[Path] = None
    job_num: Optional[int] = None
    tags: dict[str, str] = field(default_factory=dict)
    """`vtc.seed` / `vtc.config_key` (see `SEED_TAG`, `CONFIG_KEY_TAG`)."""
    swept: Optional[dict[str, str]] = None
    """A sweep job's swept values (seed included); None outside a multirun."""


def task_overrides(config: Any) -> dict[str, str]:
    """The job's command-line overrides as params, minus what Hydra also leaves out of the run
    name (`output_root`, `tracking.*`: where results go is not what is being compared)."""
    from omegaconf import OmegaConf

    overrides = override_params(raw_overrides(config))
    excluded = set(OmegaConf.select(config, "hydra.job.config.override_dirname.exclude_keys",
                                    default=None) or [])
    return {k: v for k, v in overrides.items()
            if k not in excluded and not k.startswith(("hydra.", "hydra/", "tracking."))}


def job_context(config: Any, tracking_uri: str) -> JobContext:
    """From a full Hydra config (with its `hydra` node) of a job."""
    from hydra.types import RunMode

    hydra = config.hydra
    overrides = task_overrides(config)
    name = hydra.job.override_dirname or None
    ctx = JobContext(name=name, overrides=overrides)
    seed = _config_seed(config, overrides)
    if seed is not None:
        ctx.tags[SEED_TAG] = seed
    ctx.tags[CONFIG_KEY_TAG] = SINGLE_RUN_CONFIG_KEY
    runtime_dir = hydra.runtime.get("output_dir")
    if runtime_dir and hydra.output_subdir:
        ctx.hydra_dir = Path(runtime_dir) / str(hydra.output_subdir)
    if hydra.mode == RunMode.MULTIRUN:
        ctx.sweep_dir = Path(str(hydra.sweep.dir))
        data = _parent_data(ctx.sweep_dir, tracking_uri)
        ctx.parent_run_id = data.get("run_id")
        ctx.job_num = int(hydra.job.num) if hydra.job.get("num") is not None else None
        ctx.swept = {k: overrides[k] for k in data.get("swept_keys", []) if k in overrides}
        ctx.tags[CONFIG_KEY_TAG] = config_key(ctx.swept)
        ctx.name = run_name(ctx.swept) or f"job-{ctx.job_num}"
    return ctx


def is_seed(key: str) -> bool:
    """Whether config path `key` is a seed (`optim.seed`, `loop.seed`: short name `seed`)."""
    return short_name(key) == "seed"


def _config_seed(config: Any, overrides: dict[str, str]) -> Optional[str]:
    """The job's seed: an override of a seed key, else the first seed key the config has."""
    from omegaconf import OmegaConf

    for key, value in overrides.items():
        if is_seed(key):
            return str(value)
    for path in KEY_PARAMS["seed"]:
        value = OmegaConf.select(config, path, default=None)
        if value is not None:
            return str(value)
    return None


def config_key(swept: dict[str, str]) -> str:
    """The configuration a sweep job runs, without its seed: `short=value` pairs sorted by short
    name, joined by `,` (`font_size=7,seg_budget=64`); the value of tag `vtc.config_key`."""
    pairs = sorted((short_name(k), str(v)) for k, v in swept.items() if not is_seed(k))
    return ",".join(f"{k}={v}" for k, v in pairs)


def run_name(swept: dict[str, str], max_len: int = 60) -> str:
    """A short run name from the swept values (in the sweep's order), seed last as `-s<seed>`:
    `optical`, `text-s1`, `toy_task_wide-optical`. Values that are words say what they are; a
    number does not, and a value holding a `-` would be ambiguous joined by `-`: then the name
    spells `short=value` pairs (`font_size=7,seg_budget=64-s2`). Empty when nothing is swept.
    Longer than `max_len`: cut, with a digest of the full name keeping it distinct."""
    values = [(short_name(k), str(v)) for k, v in swept.items() if not is_seed(k)]
    seeds = [str(v) for k, v in swept.items() if is_seed(k)]
    if all(re.search(r"[A-Za-z]", v) and "-" not in v for _, v in values):
        name = "-".join(v for _, v in values)
    else:
        name = ",".join(f"{k}={v}" for k, v in values)
    if seeds:
        name = f"{name}-s{seeds[0]}" if name else f"s{seeds[0]}"
    if len(name) > max_len:
        import hashlib

        digest = hashlib.sha1(name.encode()).hexdigest()[:8]
        name = f"{name[:max_len - 9]}~{digest}"
    return name


def hydra_job_context(tracking_uri: str) -> JobContext:
    """`job_context` of the Hydra job running now, or an empty context outside Hydra."""
    try:
        from hydra.core.hydra_config import HydraConfig

        if not HydraConfig.initialized():
            return JobContext()
        return job_context(_wrap(HydraConfig.get()), tracking_uri)
    except (ImportError, ValueError):
        return JobContext()


def _wrap(hydra_node: Any) -> Any:
    """A config with the given `hydra` node: what `job_context` reads (OmegaConf.select needs
    a real DictConfig, not an object with a `hydra` attribute)."""
    from omegaconf import OmegaConf

    return OmegaConf.create({"hydra": hydra_node})
