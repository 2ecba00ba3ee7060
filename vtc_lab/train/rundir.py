"""Where a training run lives: `run_dir` (decided once per `train` call), its run.json and
whether it continues an earlier attempt.

Resume model: everything of a run lives in `run_dir` (checkpoints/last.ckpt, export/, run.json
with the MLflow run id). Running again with the same run_dir continues from last.ckpt at the
saved step, in the same MLflow run, with the data stream positioned after the samples seen.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from pathlib import Path
from typing import Optional

from vtc_lab.models.reading import RUN_INFO

log = logging.getLogger(__name__)



def resolve_run_dir(cfg) -> Path:
    """`run_dir`, else the Hydra job directory, else (outside a Hydra app) a new timestamped
    directory under `<output_root>/train`. Call it once per run and pass the result on: two
    calls outside Hydra can straddle a second and name two directories."""
    if cfg.run_dir:
        return Path(cfg.run_dir)
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir)
    except Exception:  # noqa: BLE001 - called outside a Hydra app (tests, notebooks)
        return Path(cfg.output_root) / "train" / time.strftime("%Y-%m-%d_%H-%M-%S")


class RunDirError(ValueError):
    """A run directory file (run.json) that cannot be read; the message says what to do."""


def read_run_info(run_dir: str | os.PathLike) -> dict:
    """`<run_dir>/run.json` ({} when absent); a corrupt one is named with the way out."""
    path = Path(run_dir) / RUN_INFO
    if not path.exists():
        return {}
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(info, dict):
            raise ValueError(f"a JSON {type(info).__name__}, not an object")
        return info
    except (ValueError, UnicodeDecodeError) as exc:
        raise RunDirError(
            f"{path} is corrupt ({exc}). It records which MLflow run this run_dir logs into. "
            f"Restore it, or delete it to resume the checkpoints in a new MLflow run "
            f"(rm '{path}'), or train into another run_dir.") from exc


def resume_run_id(run_dir: str | os.PathLike) -> str | None:
    """The MLflow run of a resumable run_dir (has a checkpoint and run.json), else None."""
    from vtc_lab.train.checkpoints import candidates

    path = Path(run_dir)
    if not candidates(path / "checkpoints") or not (path / RUN_INFO).exists():
        return None
    return read_run_info(path).get("mlflow_run_id")


@dataclasses.dataclass
class RunPaths:
    """Where one training run lives (`run_dir`) and whether it continues an earlier attempt."""

    run_dir: Path
    last: Path
    """checkpoints/last.ckpt: written every checkpoint_every_n_steps and at the end."""
    info_path: Path
    """run.json: MLflow run id, dataset path, model signature, what the model reads (`reading`:
    what `eval train_run=` reads when the export lacks its reading.json)."""
    info: dict
    """run.json's content from an earlier attempt ({} on a fresh run)."""
    resume_from: Optional[Path]
    """The newest loadable checkpoint to continue from (None on a fresh run)."""

    @property
    def resuming(self) -> bool:
        return self.resume_from is not None


def run_paths(cfg, run_dir: Path) -> RunPaths:
    """`run_dir`'s layout; refuses a finished-or-killed run under resume=never."""
    from vtc_lab.train.checkpoints import candidates, resume_checkpoint

    last = run_dir / "checkpoints" / "last.ckpt"
    if candidates(last.parent) and cfg.resume == "never":
        raise FileExistsError(f"{last.parent} holds checkpoints and resume=never; choose another "
                              f"run_dir")
    resume_from = resume_checkpoint(last.parent)  # the newest loadable one, saying what it skips
    info = read_run_info(run_dir)
    if resume_from is not None:
        log.info("resuming %s from %s", run_dir, resume_from)
    return RunPaths(run_dir, last, run_dir / RUN_INFO, info, resume_from)
