"""Loading a Lightning training checkpoint's weights into a backbone model.

One loader for every reader of `vtc-lab train` checkpoints: `vtc-lab eval checkpoint=...` and
the export of sharded (FSDP / DeepSpeed) runs. The LightningModule stores the backbone under an
attribute prefix (`model.` today); the loader finds the prefix instead of assuming it, so a
renamed attribute does not silently load nothing.

A damaged file (empty, truncated, garbage, a flipped byte) is named with the reason before
anything is unpickled: `checkpoint_problem` checks the torch zip archive's CRCs, so the user sees
"<file> is not a readable checkpoint: it is truncated" instead of a miniz or unpickling traceback.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any, Optional


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be read; the message names it and the way out."""


def checkpoint_problem(path: str | os.PathLike) -> Optional[str]:
    """Why `path` is not a loadable checkpoint, or None when it is (nothing is unpickled)."""
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


def load_checkpoint_file(path: str | os.PathLike, *, weights_only: bool = True,
                         map_location: str = "cpu") -> Any:
    """`torch.load` whose failures name the file and the way out (`CheckpointError`)."""
    import torch

    path = Path(path)
    problem = checkpoint_problem(path) if path.exists() else "it does not exist"
    if problem is not None:
        raise CheckpointError(f"{path} is not a readable checkpoint: {problem}. Point at "
                              f"another checkpoint (a run directory keeps last.ckpt and the "
                              f"latest step-*.ckpt), or retrain.")
    try:
        return torch.load(path, map_location=map_location, weights_only=weights_only)
    except Exception as exc:  # noqa: BLE001 - unpickling errors of a damaged or foreign file
        raise CheckpointError(f"{path} could not be loaded ({type(exc).__name__}: {exc}); "
                              f"point at another checkpoint or retrain") from exc


def _tied_aliases(state: dict[str, Any]) -> set[str]:
    """Keys whose tensor is the same storage as an earlier key's (tied weights such as
    `lm_head.weight` = the input embeddings): a consolidated checkpoint may store them once."""
    seen: dict[tuple, str] = {}
    aliases = set()
    for key, tensor in state.items():
        ident = (tensor.data_ptr(), tuple(tensor.shape), tensor.dtype)
        if ident[0] and ident in seen:
            aliases.add(key)
        else:
            seen.setdefault(ident, key)
    return aliases


def is_sharded_checkpoint(path: str | Path) -> bool:
    """A torch.distributed.checkpoint directory (FSDP with sharded state dicts: one file per
    rank and a `.metadata` index), as opposed to a single-file Lightning checkpoint."""
    return Path(path).is_dir() and (Path(path) / ".metadata").is_file()


def sharded_weights(path: Path) -> dict[str, Any]:
    """The full model weights of a sharded checkpoint, read in this one process: every rank's
    shards are stitched back per tensor (the optimizer state, also in the directory, is not
    read). The one user of torch's private `_load_state_dict` and `_EmptyStateDictLoadPlanner`
    (the loader torch's own dcp_to_torch_save and Lightning's checkpoint consolidation use: the
    public `dcp.load` fills only keys the caller already holds); vtc_lab.compat.PRIVATE says
    which torch versions it was verified with."""
    from torch.distributed.checkpoint import FileSystemReader

    from vtc_lab.compat import private

    load = private("torch.dcp._load_state_dict")
    planner = private("torch.dcp._EmptyStateDictLoadPlanner")
    state: dict[str, Any] = {}
    load(state, storage_reader=FileSystemReader(str(path)), planner=planner(keys={"model"}),
         no_dist=True)
    if "model" not in state:
        raise ValueError(f"sharded checkpoint {path} holds no model weights (keys: {sorted(state)})")
    return state["model"]


def load_checkpoint_weights(model: Any, path: str | Path, *, weights_only: bool = True) -> None:
    """Load the checkpoint's `state_dict` into `model` (a torch module), whatever attribute
    prefix the LightningModule gave it (`model.`, `backbone.model.`, ...). `path` is a
    Lightning checkpoint file or an FSDP sharded checkpoint directory.

    Every weight of `model` must be in the checkpoint, except tied aliases of a weight that is.
    `weights_only` (the default) unpickles tensors only: keep it for checkpoints from elsewhere;
    `False` is for files this run wrote itself (a DeepSpeed consolidation holds other objects).
    Raises `CheckpointError` naming the file when it is damaged, ValueError naming a missing
    weight when the checkpoint is of another model.
    """
    if is_sharded_checkpoint(path):
        state = sharded_weights(Path(path))
    else:
        state = load_checkpoint_file(path, weights_only=weights_only)
        state = state.get("state_dict", state)
    own = model.state_dict()
    required = set(own) - _tied_aliases(own)
    missing = sorted(required)
    for prefix in sorted({k[: len(k) - len(o)] for k in state for o in own if k.endswith(o)},
                         key=len):
        picked = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if required <= set(picked):
            model.load_state_dict({k: picked[k] for k in own if k in picked}, strict=False)
            return
        missing = min(missing, sorted(required - set(picked)), key=len)
    raise ValueError(f"checkpoint {path}: its state_dict does not hold this model's weights "
                     f"(missing e.g. {missing[0]!r}); was it trained with another model config?")
