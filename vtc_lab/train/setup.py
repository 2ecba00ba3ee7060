"""`setup(cfg)`: everything a training run needs before its MLflow run opens (so a bad config
fails first): the dataset (built if missing), the backbone, the encoder, the data module and the
Lightning module, and the `ReadingSpec` the model is trained on."""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any

from vtc_lab.tracking.runs import launched_rank

def model_signature(cfg, char_slots: int = 1) -> dict:
    """What must match between a checkpoint and the model it is loaded into: the backbone, and
    the character-loss head when there is one (its output size is vocab x `char_slots`, the
    character cells per vision token of the renderer's grid)."""
    import hashlib

    m = cfg.model
    sig: dict[str, Any] = {"source": m.source, "arch": m.arch, "lora_rank": m.lora_rank}
    if m.source == "tiny":
        sig["tiny"] = dataclasses.asdict(m.tiny)
    else:  # the architecture, not where the directory lives (checkpoints move between machines)
        config = Path(m.path) / "config.json"
        sig["config_json_sha256"] = (hashlib.sha256(config.read_bytes()).hexdigest()
                                     if config.is_file() else None)
    sig["char_head"] = cfg.optim.char_loss_weight > 0
    if sig["char_head"]:  # only then: signatures of runs without the head stay as they were
        sig["char_slots"] = char_slots
    return sig


def _dataset(cfg):
    """Open the configured dataset, building it first (build-data's config-hash rules)."""
    from vtc_lab.data.build import ensure_dataset
    from vtc_lab.data.shards import open_dataset

    if cfg.dataset_dir and not (Path(cfg.dataset_dir) / "manifest.json").is_file():
        # a typo here used to build the default fixture dataset at that path and train on it
        raise FileNotFoundError(
            f"dataset_dir={cfg.dataset_dir} is not a built dataset (no manifest.json there). "
            f"Check the path, build it first (vtc-lab build-data output_dir={cfg.dataset_dir} "
            f"data=...), or leave dataset_dir unset to train on the data config's own dataset "
            f"under <output_root>/datasets/ (built when missing).")
    build = cfg.dataset_spec()
    if launched_rank() == 0:
        path = ensure_dataset(build)
    else:  # torchrun / Slurm start every rank at once: only rank 0 builds, the others wait
        from vtc_lab.data.build import check_directory, config_hash, dataset_dir

        path = dataset_dir(build)
        deadline = time.monotonic() + 24 * 3600
        while (check_directory(path, build, config_hash(build)) or {}).get("status") != "complete":
            if time.monotonic() > deadline:
                raise TimeoutError(f"rank {launched_rank()}: {path} was not built by rank 0 in 24 h")
            time.sleep(5)
    dataset = open_dataset(path)
    if dataset.num_samples == 0:
        raise ValueError(f"{path}: the dataset is empty (0 samples; see its stats.json for why "
                         f"every trace was skipped)")
    return dataset


def _weights_dtype(cfg) -> str:
    """`auto`: float32 for 32-true and mixed precision (fp32 master weights), bf16 for bf16-true."""
    if cfg.model.dtype != "auto":
        return cfg.model.dtype
    return "bfloat16" if cfg.trainer.precision == "bf16-true" else "float32"


def _total_steps(cfg, train_samples: int, world: int) -> int:
    oc = cfg.optim
    if oc.max_steps > 0:
        return oc.max_steps
    per_step = oc.batch_size * oc.grad_accum * world
    return max(1, math.ceil(train_samples / per_step)) * oc.max_epochs


@dataclasses.dataclass
class Setup:
    """Everything `fit` needs, built before the MLflow run opens (a bad config fails first)."""

    dataset: Any
    backbone: Any
    datamodule: Any
    module: Any
    total_steps: int
    reading: Any
    """The `ReadingSpec` the model is trained on: recorded in run.json and the export, and
    handed to the evaluator, so every reader feeds the model what training fed it."""


def reading_of(dataset, image_max_pixels: int | None):
    """The `ReadingSpec` of training on `dataset` (its manifest's renderer, system prompt and
    image position) with the encoder's page cap `image_max_pixels`."""
    from vtc_lab.models.reading import ReadingSpec
    from vtc_lab.render.config import RenderConfig

    return ReadingSpec(renderer=RenderConfig(**dataset.manifest["config"]["renderer"]),
                       system_prompt=dataset.system_prompt, image_position=dataset.image_position,
                       image_max_pixels=image_max_pixels)


def setup(cfg) -> Setup:
    """Dataset (built if missing), backbone, encoder, data module and Lightning module."""
    from vtc_lab.models import load_backbone
    from vtc_lab.train.collate import SFTEncoder
    from vtc_lab.train.datamodule import SFTDataModule
    from vtc_lab.train.module import SFTModule

    tc, oc = cfg.trainer, cfg.optim
    if tc.threads:
        import torch

        torch.set_num_threads(tc.threads)
    dataset = _dataset(cfg)
    reading = reading_of(dataset, cfg.model.image_max_pixels)
    cfg.model.dtype = _weights_dtype(cfg)
    backbone = load_backbone(cfg.model)
    encoder = SFTEncoder(backbone.processor, backbone.stop_token_ids,
                         system_prompt=reading.system_prompt, image_position=reading.image_position,
                         cutoff_len=oc.cutoff_len, truncation=oc.truncation,
                         image_max_pixels=reading.image_max_pixels,
                         memory=oc.memory)
    char_slots = 1
    if oc.char_loss_weight > 0:
        from vtc_lab.train.char_loss import CharLabeler, grid_slots

        encoder.char_labels = CharLabeler(backbone.tokenizer, backbone.vision_spec,
                                          grid_slots(cfg.renderer, backbone.vision_spec))
        char_slots = encoder.char_labels.num_slots
    datamodule = SFTDataModule(dataset, encoder, batch_size=oc.batch_size,
                               val_fraction=oc.val_fraction, val_max_samples=oc.val_max_samples,
                               shuffle_buffer=oc.shuffle_buffer, num_workers=tc.num_workers,
                               seed=oc.seed)
    total = _total_steps(cfg, datamodule.train_samples, tc.devices * tc.num_nodes)
    module = SFTModule(backbone, lr=oc.lr, weight_decay=oc.weight_decay, betas=oc.betas,
                       warmup_ratio=oc.warmup_ratio, min_lr_ratio=oc.min_lr_ratio,
                       total_steps=total, char_loss_weight=oc.char_loss_weight,
                       char_slots=char_slots, model_signature=model_signature(cfg, char_slots))
    return Setup(dataset, backbone, datamodule, module, total, reading)
