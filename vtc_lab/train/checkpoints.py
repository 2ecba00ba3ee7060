"""Checkpoint files that are either complete or absent, and a resume that survives a bad one.

- `AtomicCheckpointIO` writes each checkpoint through `vtc_lab.atomic` (a temporary file in the
  same directory, fsync, rename over the final name): a full disk, a crash or kill -9 mid-save
  leaves the previous checkpoint intact, never a truncated `step-*.ckpt` or `last.ckpt` under
  its real name.
- `resume_checkpoint` picks the newest *loadable* checkpoint of a run directory (`last.ckpt`,
  then `step-*.ckpt` by step), saying which files it skipped and why; when none is loadable it
  raises `CheckpointError` naming each file and what to do.
- `read_checkpoint` is `torch.load` whose failures name the file (an empty, truncated or
  garbage file otherwise ends in `EOFError`/`UnpicklingError`/a miniz message).

Loadable here means: a complete torch zip archive whose every member passes its CRC check
(truncation, garbage and flipped bytes all fail it) without unpickling anything. DeepSpeed
checkpoints are directories of shards and are taken as they are.
"""

from __future__ import annotations

import io
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any, Optional

from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from vtc_lab.atomic import TMP_MARK
from vtc_lab.models.checkpoint import (  # noqa: F401 - re-exported
    CheckpointError, checkpoint_problem, load_checkpoint_file)

log = logging.getLogger(__name__)

LAST = "last.ckpt"
_STEP_RE = re.compile(r"step[-=](\d+)")


def save_atomic(checkpoint: dict[str, Any], path: str | os.PathLike) -> None:
    """torch.save through `vtc_lab.atomic` (same-directory temporary file, fsync, rename)."""
    import torch

    from vtc_lab import atomic

    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic.write_bytes(path, buffer.getbuffer())


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint IO plugin: `save_checkpoint` through `save_atomic`."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any,
                        storage_options: Optional[Any] = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        save_atomic(checkpoint, path)


def _step_of(path: Path) -> int:
    match = _STEP_RE.search(path.name)
    return int(match.group(1)) if match else -1


def candidates(ckpt_dir: str | os.PathLike) -> list[Path]:
    """Checkpoints of a run directory, newest first: last.ckpt, then step-N.ckpt by N."""
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        return []
    steps = sorted((p for p in ckpt_dir.iterdir()
                    if p.name != LAST and p.name.endswith(".ckpt") and TMP_MARK not in p.name),
                   key=_step_of, reverse=True)
    last = ckpt_dir / LAST
    return ([last] if last.exists() else []) + steps


def resume_checkpoint(ckpt_dir: str | os.PathLike) -> Optional[Path]:
    """The newest loadable checkpoint of `ckpt_dir` (None when there is none at all).

    Skipped files are reported on stderr with the reason; if every file is bad, raises
    `CheckpointError` naming them and the choices (delete them to start over, or another
    run_dir)."""
    found = candidates(ckpt_dir)
    skipped: list[tuple[Path, str]] = []
    for path in found:
        problem = checkpoint_problem(path)
        if problem is None:
            if skipped:
                text = "; ".join(f"{p} ({why})" for p, why in skipped)
                msg = (f"resume: skipping unloadable checkpoint(s) {text}; resuming from the "
                       f"newest loadable one, {path}")
                log.warning(msg)
                print(f"[vtc-lab] {msg}", file=sys.stderr, flush=True)
            return path
        skipped.append((path, problem))
    if skipped:
        text = "; ".join(f"{p}: {why}" for p, why in skipped)
        raise CheckpointError(
            f"no loadable checkpoint to resume from in {ckpt_dir}: {text}. To start this run "
            f"over, delete that directory (rm -r '{ckpt_dir}'); to keep it for inspection, "
            f"train into another run_dir.")
    return None


def read_checkpoint(path: str | os.PathLike, map_location: str = "cpu") -> dict[str, Any]:
    """`torch.load` of a trusted checkpoint of our own; a bad file is named with the reason."""
    return load_checkpoint_file(path, weights_only=False, map_location=map_location)
