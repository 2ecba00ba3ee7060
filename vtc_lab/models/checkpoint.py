"""Loading a Lightning training checkpoint's weights into a backbone model.

One loader for every reader of `vtc-lab train` checkpoints: `vtc-lab eval checkpoint=...` and
the export of sharded (FSDP / DeepSpeed) runs. The LightningModule stores the backbone under an
attribute prefix (`model.` today); the loader finds the prefix instead of assuming it, so a
renamed attribute does not silently load nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


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


def load_checkpoint_weights(model: Any, path: str | Path, *, weights_only: bool = True) -> None:
    """Load the checkpoint's `state_dict` into `model` (a torch module), whatever attribute
    prefix the LightningModule gave it (`model.`, `backbone.model.`, ...).

    Every weight of `model` must be in the checkpoint, except tied aliases of a weight that is.
    `weights_only` (the default) unpickles tensors only: keep it for checkpoints from elsewhere;
    `False` is for files this run wrote itself (a DeepSpeed consolidation holds other objects).
    Raises ValueError naming a missing weight when the checkpoint is of another model.
    """
    import torch

    state = torch.load(path, map_location="cpu", weights_only=weights_only)
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
