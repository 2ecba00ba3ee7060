"""`BackboneSpec`: everything vtc-lab knows about one backbone family, in one typed object.

Each family is one module under `vtc_lab/models/archs/` that defines `SPEC = BackboneSpec(...)`
(`vtc_lab.models.registry` finds it); nothing else in vtc-lab branches on the family's name. A
spec names transformers classes by string so it stays importable without torch: `ModelConfig`
validates `arch` against the registry at compose time, long before any weights load.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vtc_lab.render.vision import VisionSpec


@dataclass(frozen=True)
class ChatFormat:
    """The chat markers of a family, as its own tokenizer spells them (tiny backbones build
    their tokenizer from this; a pretrained checkpoint brings its own template and tokens)."""

    special_tokens: tuple[str, ...]
    """Special tokens of the tokenizer (role tags, image delimiters and pads, end of turn)."""
    template: str
    """Jinja chat template in the family's own shape (images as the family's image tokens)."""
    end_of_turn: str
    """The token that ends an assistant turn: generation stops there, SFT labels end there."""
    pad: str
    """Padding token."""

    def __post_init__(self) -> None:
        for name in ("end_of_turn", "pad"):
            if getattr(self, name) not in self.special_tokens:
                raise ValueError(f"ChatFormat.{name}={getattr(self, name)!r} is not one of its "
                                 f"special_tokens")


@dataclass(frozen=True)
class TinyRecipe:
    """How to build a random-init backbone of the family from `model.tiny` sizes, offline."""

    chat: ChatFormat
    """Tokens and chat template of the offline tokenizer."""
    image_processor: str
    """transformers image processor class name (the PIL one: no torchvision needed)."""
    build_config: Callable[[Any, Any], Any]
    """`(ModelConfig, tokenizer) -> transformers config` of the tiny model (imports lazily)."""
    image_processor_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra constructor arguments (e.g. the released checkpoint's mean/std)."""


@dataclass(frozen=True)
class BackboneSpec:
    """One backbone family: its name, how checkpoints name it, its vision-token rule, its
    processor and model classes, and (optionally) how to build a tiny one."""

    name: str
    """The `model.arch` value."""
    model_types: tuple[str, ...]
    """`model_type` values of a checkpoint's config.json that belong to this family."""
    vision: VisionSpec
    """The released checkpoints' vision-token rule (render's table, referenced by name)."""
    processor: str
    """transformers processor class name; vtc-lab uses its image-only variant
    (`vtc_lab.models.processor.image_only`), so no torchvision is needed."""
    model_class: str
    """transformers model class name (tiny builds; a pretrained load goes through
    `AutoModelForImageTextToText`, which maps model_type to the same class)."""
    projector_keys: tuple[str, ...] = ("merger",)
    """Substrings of the vision-side parameter names that form the projector into the language
    model (`model.freeze_projector`); every other `visual` parameter is the vision tower."""
    tiny: TinyRecipe | None = None
    """How to build a tiny random-init backbone (None: `source: pretrained` only)."""

    def __post_init__(self) -> None:
        if not self.name or not self.name.isidentifier():
            raise ValueError(f"BackboneSpec.name must be an identifier, got {self.name!r}")
        if not self.model_types:
            raise ValueError(f"BackboneSpec {self.name!r}: model_types must not be empty")
        if not self.projector_keys:
            raise ValueError(f"BackboneSpec {self.name!r}: projector_keys must not be empty")
