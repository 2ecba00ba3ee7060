"""The `model` config group: one schema for tiny random-init backbones and local checkpoints.

No torch import here, so every app can register and validate its config cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vtc_lab.models.registry import backbone_names, tiny_backbone_names

SOURCES = ("tiny", "pretrained")
DTYPES = ("auto", "float32", "bfloat16", "float16")
ATTN_IMPLEMENTATIONS = ("eager", "sdpa", "flash_attention_2", "flash_attention_3", "flex_attention")


@dataclass
class TinySpec:
    """Sizes of a random-init backbone (`source: tiny`). Defaults trained well on the toy task
    (docs/training.md, "Toy-scale findings"): ~2 M parameters, seconds per step on a CPU."""

    hidden_size: int = 128
    """Text decoder width; also the vision merger's output width."""
    num_layers: int = 4
    """Text decoder layers."""
    num_heads: int = 4
    """Text attention heads."""
    num_kv_heads: int = 2
    """Text key/value heads (grouped-query attention when < num_heads)."""
    head_dim: int = 32
    """Per-head width of the text attention."""
    intermediate_size: int = 256
    """Text MLP width."""
    vision_depth: int = 2
    """Vision transformer blocks."""
    vision_hidden_size: int = 128
    """Vision transformer width."""
    vision_heads: int = 4
    """Vision attention heads."""
    vision_intermediate_size: int = 256
    """Vision MLP width."""
    patch_size: int = 16
    """Pixels per vision patch side (Qwen3-VL uses 16, GLM-4.1V 14): with the default merge 2,
    one vision token per 32x32 (28x28) px, exactly the real backbone's token count."""
    merge_size: int = 2
    """Patches merged per side into one vision token."""
    temporal_patch_size: int = 2
    """Frames per temporal patch (images are repeated to fill it, as in the real processors)."""
    vocab_size: int = 512
    """Byte-level BPE vocabulary trained offline on the packaged MATH500 text (incl. 256 bytes
    and the special tokens)."""
    max_position_embeddings: int = 32768
    """Longest sequence the rotary tables cover."""
    seed: int = 0
    """Seed of the random weights: same seed, same model."""

    def __post_init__(self) -> None:
        for name in ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "head_dim",
                     "intermediate_size", "vision_depth", "vision_hidden_size", "vision_heads",
                     "vision_intermediate_size", "patch_size", "merge_size",
                     "temporal_patch_size", "max_position_embeddings"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"model.tiny.{name} must be a positive int, got {value!r}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"model.tiny.num_heads ({self.num_heads}) must be a multiple of "
                f"model.tiny.num_kv_heads ({self.num_kv_heads})")
        if self.vision_hidden_size % self.vision_heads:
            raise ValueError(
                f"model.tiny.vision_hidden_size ({self.vision_hidden_size}) must be divisible by "
                f"model.tiny.vision_heads ({self.vision_heads})")
        if (self.vision_hidden_size // self.vision_heads) % 4:
            raise ValueError("model.tiny.vision_hidden_size / vision_heads must be a multiple of 4 "
                             "(2-D rotary embedding of the vision tower)")
        if self.head_dim % 8:
            raise ValueError(f"model.tiny.head_dim must be a multiple of 8 (3-axis M-RoPE), "
                             f"got {self.head_dim}")
        if not 300 <= self.vocab_size <= 65536:
            raise ValueError(f"model.tiny.vocab_size must be in [300, 65536] (256 bytes + special "
                             f"tokens + merges), got {self.vocab_size}")


@dataclass
class ModelConfig:
    """Which VLM backbone to build or load, how, and which parts train.

    `source: tiny` builds the transformers class of `arch` from `tiny` sizes with random weights
    and an offline tokenizer; `source: pretrained` loads a local Hugging Face directory (`path`)
    with its own processor and chat template, never from the network.
    """

    name: str = "tiny_qwen3_vl"
    """Preset name (shown in run names and MLflow params)."""
    source: str = "tiny"
    """`tiny` (random init, built from `tiny`) or `pretrained` (local directory at `path`)."""
    arch: str = "qwen3_vl"
    """Backbone family: a module of vtc_lab/models/archs/ (the error for an unknown name lists
    them; tiny needs one with a tiny recipe), or `auto` (pretrained: read `model_type` from the
    checkpoint)."""
    path: str | None = None
    """Local checkpoint directory for `source: pretrained` (config.json, weights, processor)."""
    hub_id: str | None = None
    """The Hugging Face repo the checkpoint comes from; only used to tell the user what to
    download when `path` is missing (nothing is ever downloaded at run time)."""
    dtype: str = "auto"
    """Weight dtype: auto (float32 on CPU, bfloat16 on CUDA) | float32 | bfloat16 | float16."""
    attn_implementation: str = "sdpa"
    """Attention kernel: eager | sdpa | flash_attention_2 | flash_attention_3 | flex_attention."""
    trust_remote_code: bool = False
    """Run Python code shipped with a checkpoint. Off: only turn on for checkpoints you trust."""
    min_pixels: int | None = None
    """Processor lower bound on pixels per image (None: the processor's own default)."""
    max_pixels: int | None = None
    """Processor upper bound on pixels per image (None: the processor's own default)."""
    image_max_pixels: int | None = None
    """Downscale each page (aspect kept) to at most this many pixels before the processor: the
    training encoder and every evaluation loop read pages at this size, and training records
    it with what the model reads (`reading`), so `vtc-lab eval train_run=` reuses it (a
    different explicit value is refused). null = no cap (the processor's `max_pixels` still
    applies); `vtc-lab train` sets the paper's 262,144 (conf/train.yaml)."""
    freeze_vision: bool = False
    """Freeze the vision transformer (the paper freezes it for Glyph / Qwen3-VL SFT)."""
    freeze_projector: bool = False
    """Freeze the patch merger / projector into the language model."""
    freeze_language_model: bool = False
    """Freeze the text decoder and LM head (e.g. to train only the vision side)."""
    gradient_checkpointing: bool = False
    """Recompute activations in backward: less memory, ~30 % slower steps."""
    lora_rank: int = 0
    """LoRA adapters of this rank on the language model's `lora_targets` (0 = full fine-tuning;
    needs the `lora` extra: peft). Vision tower / projector still follow the freeze switches;
    the export merges the adapters into the weights."""
    lora_alpha: float = 16.0
    """LoRA scaling numerator (scale = alpha / rank)."""
    lora_dropout: float = 0.0
    """Dropout on the LoRA input."""
    lora_targets: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    """Linear layers of the language model that get adapters (names as in the checkpoint)."""
    tiny: TinySpec = field(default_factory=TinySpec)
    """Sizes for `source: tiny` (ignored for pretrained)."""

    def __post_init__(self) -> None:
        if isinstance(self.tiny, dict):
            self.tiny = TinySpec(**self.tiny)
        if not self.name or not isinstance(self.name, str):
            raise ValueError(f"model.name must be a non-empty string, got {self.name!r}")
        if self.source not in SOURCES:
            raise ValueError(f"model.source must be one of {SOURCES}, got {self.source!r}")
        archs = ("auto", *backbone_names())
        if self.arch not in archs:
            raise ValueError(f"model.arch must be one of {archs}, got {self.arch!r} "
                             f"(unknown backbone for model.name={self.name!r})")
        if self.source == "tiny" and self.arch not in tiny_backbone_names():
            raise ValueError(f"model.arch must be one of {tiny_backbone_names()} for "
                             f"model.source=tiny, got {self.arch!r}")
        if self.source == "pretrained" and not self.path:
            hint = f" (download {self.hub_id} there first)" if self.hub_id else ""
            raise ValueError(f"model.path must name a local checkpoint directory for "
                             f"model.source=pretrained{hint}")
        if self.dtype not in DTYPES:
            raise ValueError(f"model.dtype must be one of {DTYPES}, got {self.dtype!r}")
        if self.attn_implementation not in ATTN_IMPLEMENTATIONS:
            raise ValueError(f"model.attn_implementation must be one of {ATTN_IMPLEMENTATIONS}, "
                             f"got {self.attn_implementation!r}")
        for name in ("min_pixels", "max_pixels"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value <= 0):
                raise ValueError(f"model.{name} must be a positive int or null, got {value!r}")
        cap = self.image_max_pixels
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 784):
            raise ValueError(f"model.image_max_pixels must be an int >= 784 (28 x 28) or null, "
                             f"got {cap!r}")
        if not isinstance(self.lora_rank, int) or self.lora_rank < 0:
            raise ValueError(f"model.lora_rank must be an int >= 0, got {self.lora_rank!r}")
        if self.lora_rank and not self.lora_targets:
            raise ValueError("model.lora_targets must name at least one layer when model.lora_rank > 0")
        if not 0 <= self.lora_dropout < 1:
            raise ValueError(f"model.lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if self.min_pixels and self.max_pixels and self.min_pixels > self.max_pixels:
            raise ValueError(f"model.min_pixels ({self.min_pixels}) must be <= model.max_pixels "
                             f"({self.max_pixels})")
