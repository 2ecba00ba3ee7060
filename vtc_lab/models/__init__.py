"""Backbones: the only place in vtc-lab that calls `from_pretrained`.

`ModelConfig` and the backbone registry are importable without torch; the loaders import
transformers lazily. Each backbone family is one module in `vtc_lab/models/archs/`.
"""

from vtc_lab.models.config import ModelConfig, TinySpec
from vtc_lab.models.registry import backbone_names, get_backbone, vision_spec_for
from vtc_lab.models.spec import BackboneSpec

__all__ = ["Backbone", "BackboneSpec", "ModelConfig", "TinySpec", "backbone_names",
           "get_backbone", "vision_spec_for", "load_backbone", "load_tokenizer",
           "save_backbone", "apply_training_switches", "resolve_dtype"]

_LAZY = {"Backbone", "load_backbone", "load_tokenizer", "save_backbone",
         "apply_training_switches", "resolve_dtype"}


def __getattr__(name: str):
    # Keep `from vtc_lab.models import ModelConfig` free of torch/transformers imports.
    if name in _LAZY:
        from vtc_lab.models import backbones

        return getattr(backbones, name)
    raise AttributeError(f"module 'vtc_lab.models' has no attribute {name!r}")
