"""Backbones: the only place in vtc-lab that calls `from_pretrained`.

`ModelConfig` is importable without torch; the loaders import transformers lazily.
"""

from vtc_lab.models.config import ModelConfig, TinySpec

__all__ = ["Backbone", "ModelConfig", "TinySpec", "load_backbone", "load_tokenizer",
           "save_backbone", "apply_training_switches", "resolve_dtype"]

_LAZY = {"Backbone", "load_backbone", "load_tokenizer", "save_backbone",
         "apply_training_switches", "resolve_dtype"}


def __getattr__(name: str):
    # Keep `from vtc_lab.models import ModelConfig` free of torch/transformers imports.
    if name in _LAZY:
        from vtc_lab.models import backbones

        return getattr(backbones, name)
    raise AttributeError(f"module 'vtc_lab.models' has no attribute {name!r}")
