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
import zipfile
from pathlib import Path
from typing import Any, Optional

from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from vtc_lab.atomic import TMP_MARK

log = logging.getLogger(__name__)

LAST = "last.ckpt"
_STEP_RE = re.compile(r"step[-=](\d+)")


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be read; the message names it and the way out."""


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


def checkpoint_problem(path: str | os.PathLike) -> Optional[str]:
    """Why `path` is not a loadable checkpoint, or None when it is."""
    path = Path(path)
    if path.is_dir():  # DeepSpeed shards: taken as written
        return None
    try:
        size = path.stat().st_size
    except OSError as exc:
        return f"cannot read it ({exc.strerror})"
    if size == 0:
        return "it is empty (0 bytes)"
    try:
        with zipfile.ZipFile(path) as archive:
            if not any(n.endswith("data.pkl") for n in archive.namelist()):
                return "it is a zip archive but not a torch checkpoint (no data.pkl)"
            bad = archive.testzip()
            if bad is not None:
                return f"its member {bad} is corrupt (CRC mismatch)"
    except zipfile.BadZipFile as exc:
        return f"it is truncated or not a checkpoint ({exc}; {size} bytes)"
    except (OSError, EOFError, ValueError) as exc:
        return f"it is truncated or corrupt ({type(exc).__name__}: {exc})"
    return None


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
    import torch

    path = Path(path)
    problem = checkpoint_problem(path) if path.exists() else "it does not exist"
    if problem is not None:
        raise CheckpointError(f"{path} is not a readable checkpoint: {problem}. Point at "
                              f"another checkpoint (a run directory keeps last.ckpt and the "
                              f"latest step-*.ckpt), or retrain.")
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # noqa: BLE001 - unpickling errors of a damaged file
        raise CheckpointError(f"{path} could not be loaded ({type(exc).__name__}: {exc}); "
                              f"point at another checkpoint or retrain") from exc
