"""Backbones: build a tiny random-init VLM or load a local checkpoint, and save one.

This is the only module in vtc-lab that calls `from_pretrained`. A `Backbone` bundles what every
later stage needs from one place, so training, inference and token counting can never disagree
about the processor, the chat template or the vision-token rule.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vtc_lab import atomic
from vtc_lab.models.config import ModelConfig
from vtc_lab.models.registry import checkpoint_arch, find_backbone, get_backbone, projector_keys
from vtc_lab.models.tiny_tokenizer import build_tiny_tokenizer

log = logging.getLogger(__name__)

MODEL_CARD = "vtc_lab_model.json"
"""Written next to an exported model: the ModelConfig it was built from and its arch."""


@dataclass
class Backbone:
    """A VLM with everything needed to feed it: model, processor (image processor + tokenizer +
    chat template), the exact vision-token rule and the tokens that end an assistant turn."""

    model: Any
    processor: Any
    tokenizer: Any
    vision_spec: Any
    arch: str
    stop_token_ids: list[int] = field(default_factory=list)
    """Token ids that end an assistant turn (generation stops there; SFT labels end there)."""
    config: ModelConfig | None = None


def resolve_dtype(name: str):
    """`auto` is float32 on CPU (CPU bf16 matmuls are slow and lossy) and bfloat16 on CUDA."""
    import torch

    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_available() else torch.float32
    return getattr(torch, name)


def _check_local_dir(cfg: ModelConfig) -> Path:
    path = Path(cfg.path).expanduser()
    if not path.is_dir() or not (path / "config.json").is_file():
        what = cfg.hub_id or "the Hugging Face checkpoint"
        raise FileNotFoundError(
            f"model.path={cfg.path!r} (preset model={cfg.name}) is not a local checkpoint "
            f"directory (no config.json). vtc-lab never downloads at run time: download {what} "
            f"first, e.g. `huggingface-cli download {cfg.hub_id or '<repo>'} --local-dir "
            f"{cfg.path}`, then set model.path=<that directory>.")
    return path


def load_tokenizer(cfg: ModelConfig):
    """The backbone's tokenizer without loading weights (what build-data counts tokens with)."""
    if cfg.source == "tiny":
        return build_tiny_tokenizer(get_backbone(cfg.arch).tiny.chat, cfg.tiny.vocab_size)
    from transformers import AutoTokenizer

    path = _check_local_dir(cfg)
    return AutoTokenizer.from_pretrained(str(path), local_files_only=True,
                                         trust_remote_code=cfg.trust_remote_code)


def _tiny_image_processor(cfg: ModelConfig):
    """The recipe's image processor with the tiny patch sizes and the released checkpoint's
    pixel bounds (or the config's)."""
    import transformers

    spec = get_backbone(cfg.arch)
    t = cfg.tiny
    cls = getattr(transformers, spec.tiny.image_processor)
    return cls(patch_size=t.patch_size, merge_size=t.merge_size,
               temporal_patch_size=t.temporal_patch_size, **spec.tiny.image_processor_kwargs,
               size={"shortest_edge": cfg.min_pixels or spec.vision.min_pixels,
                     "longest_edge": cfg.max_pixels or spec.vision.max_pixels})


def _build_tiny(cfg: ModelConfig):
    import torch
    import transformers

    from vtc_lab.models.processor import image_only

    spec = get_backbone(cfg.arch)
    recipe = spec.tiny
    tokenizer = build_tiny_tokenizer(recipe.chat, cfg.tiny.vocab_size)
    processor = image_only(spec.processor)(image_processor=_tiny_image_processor(cfg),
                                           tokenizer=tokenizer,
                                           chat_template=tokenizer.chat_template)
    model_config = recipe.build_config(cfg, tokenizer)
    model_cls = getattr(transformers, spec.model_class)
    # A private generator state: the same seed gives the same weights whatever ran before.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.tiny.seed)
        model = model_cls(model_config)
    model.to(resolve_dtype(cfg.dtype))
    stop = [tokenizer.convert_tokens_to_ids(recipe.chat.end_of_turn)]
    model.generation_config.eos_token_id = stop
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, processor, tokenizer, stop


def _load_processor(cfg: ModelConfig, path: Path, arch: str):
    """Known families: assembled image-only from the checkpoint's own parts (no torchvision
    needed); anything else: the checkpoint's AutoProcessor."""
    from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer

    from vtc_lab.models.processor import image_only, read_chat_template

    common = dict(local_files_only=True, trust_remote_code=cfg.trust_remote_code)
    spec = find_backbone(arch)
    if spec is None:
        return AutoProcessor.from_pretrained(str(path), **common)
    tokenizer = AutoTokenizer.from_pretrained(str(path), **common)
    image_processor = AutoImageProcessor.from_pretrained(str(path), **common)
    template = read_chat_template(path, tokenizer)
    if not template:
        raise ValueError(f"model.path={str(path)!r} has no chat template (tokenizer_config.json, "
                         f"chat_template.jinja or chat_template.json); use an instruct checkpoint")
    return image_only(spec.processor)(image_processor=image_processor, tokenizer=tokenizer,
                                      chat_template=template)


def _load_pretrained(cfg: ModelConfig):
    from transformers import AutoModelForImageTextToText

    path = _check_local_dir(cfg)
    arch = checkpoint_arch(cfg, path)
    processor = _load_processor(cfg, path, arch)
    image_processor = processor.image_processor
    if cfg.min_pixels is not None:
        image_processor.size["shortest_edge"] = cfg.min_pixels
    if cfg.max_pixels is not None:
        image_processor.size["longest_edge"] = cfg.max_pixels
    model = AutoModelForImageTextToText.from_pretrained(
        str(path), local_files_only=True, trust_remote_code=cfg.trust_remote_code,
        dtype=resolve_dtype(cfg.dtype), attn_implementation=cfg.attn_implementation)
    tokenizer = processor.tokenizer
    stop = model.generation_config.eos_token_id
    stop = list(stop) if isinstance(stop, (list, tuple)) else ([stop] if stop is not None else [])
    if not stop and tokenizer.eos_token_id is not None:
        stop = [tokenizer.eos_token_id]
    return arch, model, processor, tokenizer, stop


def vision_spec_of(processor, arch: str):
    """The renderer's `VisionSpec` read off the processor itself, so token counts match it; the
    family's spec says how it counts the delimiters and the temporal frames."""
    from vtc_lab.render import VisionSpec

    family = find_backbone(arch)
    ip = processor.image_processor
    size = ip.size
    get = size.get if hasattr(size, "get") else (lambda key, default=None: getattr(size, key, default))
    return VisionSpec(name=arch, patch_size=int(ip.patch_size), merge_size=int(ip.merge_size),
                      temporal_patch_size=int(ip.temporal_patch_size),
                      min_pixels=int(get("shortest_edge")), max_pixels=int(get("longest_edge")),
                      image_delimiters=family.vision.image_delimiters if family else 2,
                      temporal_in_bounds=family.vision.temporal_in_bounds if family else False)


def apply_training_switches(model, cfg: ModelConfig, arch: str | None = None) -> dict[str, int]:
    """Freeze parts and turn on gradient checkpointing; returns trainable parameter counts.
    `arch` (default `cfg.arch`) picks the family's projector parameters."""
    counts = {"vision": 0, "projector": 0, "language_model": 0}
    family = find_backbone(arch or cfg.arch)
    keys = family.projector_keys if family else projector_keys()
    for name, param in model.named_parameters():
        if "visual" in name:
            part = "projector" if any(key in name for key in keys) else "vision"
        else:
            part = "language_model"
        frozen = {"vision": cfg.freeze_vision, "projector": cfg.freeze_projector,
                  "language_model": cfg.freeze_language_model}[part]
        param.requires_grad_(not frozen)
        if not frozen:
            counts[part] += param.numel()
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    return counts


def apply_lora(model, cfg: ModelConfig):
    """Wrap `model` with LoRA adapters on the language model (peft); vision tower and projector
    keep the trainability the freeze switches gave them."""
    if not cfg.lora_rank:
        return model
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as exc:
        raise ImportError("model.lora_rank > 0 needs peft: pip install 'vtc-lab[lora]'") from exc
    trainable = {n for n, p in model.named_parameters() if p.requires_grad and "visual" in n}
    targets = "|".join(cfg.lora_targets)
    lora = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=rf"^(?!.*visual).*\.({targets})$")
    wrapped = get_peft_model(model, lora)
    for name, param in wrapped.named_parameters():
        if name.removeprefix("base_model.model.") in trainable:
            param.requires_grad_(True)
    return wrapped


def load_backbone(cfg: ModelConfig) -> Backbone:
    """Build (`source: tiny`) or load (`source: pretrained`, local files only) a backbone."""
    if cfg.source == "tiny":
        model, processor, tokenizer, stop = _build_tiny(cfg)
        arch = cfg.arch
    else:
        arch, model, processor, tokenizer, stop = _load_pretrained(cfg)
    apply_training_switches(model, cfg, arch)
    model = apply_lora(model, cfg)
    return Backbone(model=model, processor=processor, tokenizer=tokenizer,
                    vision_spec=vision_spec_of(processor, arch), arch=arch,
                    stop_token_ids=stop, config=cfg)


def save_backbone(backbone: Backbone, directory: str | os.PathLike) -> Path:
    """`save_pretrained` of model + processor into `directory`, atomically (temp dir + rename).

    Reload with `ModelConfig(source="pretrained", path=directory, arch="auto")`.
    """
    target = Path(directory)
    with atomic.directory(target) as tmp:
        model = backbone.model
        if hasattr(model, "merge_and_unload"):  # LoRA: export merged weights, keep the adapters
            import copy

            model = copy.deepcopy(model).merge_and_unload()
        model.save_pretrained(str(tmp))
        backbone.processor.save_pretrained(str(tmp))
        card = {"arch": backbone.arch, "stop_token_ids": backbone.stop_token_ids,
                "model_config": asdict(backbone.config) if backbone.config else None}
        (tmp / MODEL_CARD).write_text(json.dumps(card, indent=2))
    return target
