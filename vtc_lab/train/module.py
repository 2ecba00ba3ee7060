"""`SFTModule`: causal-LM loss on the assistant tokens of a VLM backbone.

AdamW, linear warmup then cosine decay (per optimizer step), gradient accumulation and clipping
are Lightning's; we log `train/loss`, `train/lr`, `train/tokens_per_s` (supervised + prompt
tokens through the model per second), the truncation counters and `val/loss`. An optional
auxiliary per-vision-token character loss (`char_loss_weight > 0`) puts a linear head on the
merged vision tokens that predicts the character drawn under each (labels from the renderer's
layout), the dense signal that lets a random-init tower learn to read.
"""

from __future__ import annotations

import math
import time
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F

from vtc_lab.models.internals import vision_tokens, vision_tower
from vtc_lab.train.collate import IGNORE_INDEX

class NonFiniteError(FloatingPointError):
    """The loss or the weights became nan/inf: training stops before anything non-finite is
    checkpointed or exported."""


MODEL_INPUTS = ("input_ids", "attention_mask", "mm_token_type_ids", "pixel_values", "image_grid_thw")


def _local_parts(tensor: Any) -> list[torch.Tensor]:
    """The plain tensors this rank holds of a state-dict value: itself, or the local shards of
    an FSDP sharded state dict (`ShardedTensor`, `DTensor`), which torch ops cannot take whole."""
    if hasattr(tensor, "local_shards"):  # ShardedTensor
        return [shard.tensor for shard in tensor.local_shards()]
    if hasattr(tensor, "to_local"):  # DTensor
        return [tensor.to_local()]
    return [tensor] if torch.is_tensor(tensor) else []


def first_non_finite(state: dict[str, Any]) -> str | None:
    """Name of the first floating tensor holding nan/inf (this rank's shards of a sharded one),
    or None."""
    for name, value in state.items():
        for tensor in _local_parts(value):
            if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                return name
    return None


def warmup_cosine(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """LR multiplier: linear 0 -> 1 over `warmup` steps, then cosine 1 -> min_ratio at `total`."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class SFTModule(pl.LightningModule):
    """Wraps a `vtc_lab.models.Backbone`; `backbone.model` is the trained module."""

    def __init__(self, backbone, *, lr: float, weight_decay: float = 0.0,
                 betas: tuple[float, float] = (0.9, 0.999), warmup_ratio: float = 0.1,
                 min_lr_ratio: float = 0.0, total_steps: int = 100, char_loss_weight: float = 0.0,
                 char_slots: int = 1, model_signature: dict | None = None):
        super().__init__()
        self.backbone = backbone
        self.model = backbone.model
        self.lr, self.weight_decay, self.betas = lr, weight_decay, tuple(betas)
        self.warmup_ratio, self.min_lr_ratio = warmup_ratio, min_lr_ratio
        self.total_steps = total_steps
        self.char_loss_weight = char_loss_weight
        self.model_signature = model_signature or {}
        self.char_head = None
        self.char_slots = char_slots
        if char_loss_weight > 0:
            hidden = self.model.config.text_config.hidden_size
            vocab = self.model.config.text_config.vocab_size
            self.char_head = torch.nn.Linear(hidden, vocab * char_slots)
        self._vision_out: list[torch.Tensor] = []
        self._tick: float | None = None
        self._tokens = 0
        self.stats: dict[str, int] = {}
        self._worker_stats: dict[int, dict[str, int]] = {}

    # -- forward -----------------------------------------------------------------------------
    def _capture_vision(self, _module, _inputs, output) -> None:
        self._vision_out.append(vision_tokens(output))

    def _dummy_vision(self) -> torch.Tensor:
        """A zero-weighted pass of a tiny blank image through the vision tower.

        A batch without images would leave the tower's parameters without gradients, and DDP
        (which all-reduces every trainable parameter) would hang or fail; adding 0 * output
        gives them a zero gradient instead. Under FSDP every rank must also gather the tower's
        shards in the same order as a rank whose batch has images (tower first, then the
        language model), frozen or not, in training and validation alike: so it runs before
        the model's forward, whenever a batch has no images."""
        visual = vision_tower(self.model)
        spec = self.backbone.vision_spec
        m = spec.merge_size
        dim = 3 * spec.temporal_patch_size * spec.patch_size ** 2
        pixels = torch.zeros((m * m, dim), device=self.device, dtype=self.model.dtype)
        grid = torch.tensor([[1, m, m]], device=self.device)
        out = visual(pixels, grid_thw=grid)
        tensors = [t for t in out.values() if isinstance(t, torch.Tensor)]
        return sum(t.float().sum() for t in tensors) * 0.0

    def loss(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        inputs = {k: batch[k] for k in MODEL_INPUTS if k in batch}
        hook = None
        visual = vision_tower(self.model)
        if self.char_head is not None and "pixel_values" in batch and visual is not None:
            self._vision_out = []
            hook = visual.register_forward_hook(self._capture_vision)
        # Project only the positions whose next token is supervised: with a 32k-token prompt
        # full-vocabulary logits would be the largest tensor of the step (20 GB in fp32).
        labels = batch["labels"]
        keep = torch.zeros_like(labels, dtype=torch.bool)
        keep[:, :-1] = labels[:, 1:] != IGNORE_INDEX
        dummy = None
        if "pixel_values" not in batch and visual is not None:
            dummy = self._dummy_vision()
        try:
            out = self.model(**inputs, use_cache=False, logits_to_keep=keep)
        finally:
            if hook is not None:
                hook.remove()
        targets = labels[:, 1:][keep[:, :-1]]
        logits = out.logits.reshape(-1, out.logits.size(-1)).float()
        if targets.numel():
            lm_loss = F.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX)
        else:  # a batch of validation padding only (datamodule.padding_of): no token, no loss
            lm_loss = logits.sum() * 0.0
        parts = {"lm_loss": lm_loss.detach()}
        loss = lm_loss
        if dummy is not None:
            loss = loss + dummy
        if self.char_head is not None:
            if self._vision_out and "char_labels" in batch:
                feats = self._vision_out[0]
                labels_c = batch["char_labels"].to(feats.device)
                if labels_c.dim() == 1:
                    labels_c = labels_c[:, None]
                if (feats.shape[0] == labels_c.shape[0] and labels_c.shape[1] == self.char_slots
                        and bool((labels_c != IGNORE_INDEX).any())):
                    logits_c = self.char_head(feats.float()).view(-1, self.char_head.out_features
                                                                  // self.char_slots)
                    char = F.cross_entropy(logits_c, labels_c.reshape(-1),
                                           ignore_index=IGNORE_INDEX)
                    parts["char_loss"] = char.detach()
                    loss = loss + self.char_loss_weight * char
            else:
                loss = loss + 0.0 * sum(p.sum() for p in self.char_head.parameters())
            self._vision_out = []
        return loss, parts

    # -- steps -------------------------------------------------------------------------------
    def _note_position(self, batch: dict) -> None:
        position = batch.get("position")
        datamodule = getattr(self.trainer, "datamodule", None)
        if position is not None and datamodule is not None and hasattr(datamodule, "start_positions"):
            worker, pos = (int(x) for x in position.tolist())
            datamodule.start_positions[worker] = pos

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        if self._tick is None:
            self._tick = time.perf_counter()
        loss, parts = self.loss(batch)
        if not torch.isfinite(loss.detach()).all():
            self._stop_non_finite(f"the training loss is {float(loss.detach().float()):g}")
        self._tokens += int(batch["attention_mask"].sum())
        self._note_position(batch)
        if "stats" in batch:  # cumulative per DataLoader worker: keep each, report the sum
            worker = int(batch["position"][0]) if "position" in batch else 0
            self._worker_stats[worker] = {k: int(v) for k, v in batch["stats"].items()}
            self.stats = {k: sum(w.get(k, 0) for w in self._worker_stats.values())
                          for k in self._worker_stats[worker]}
        bs = batch["input_ids"].size(0)
        self.log("train/loss", parts["lm_loss"], on_step=True, prog_bar=True, batch_size=bs)
        if "char_loss" in parts:
            self.log("train/char_loss", parts["char_loss"], on_step=True, batch_size=bs)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        # once per optimizer step (after the last accumulated micro-batch)
        if (batch_idx + 1) % self.trainer.accumulate_grad_batches:
            return
        now = time.perf_counter()
        if self._tick is not None and now > self._tick:
            self.log("train/tokens_per_s", self._tokens / (now - self._tick), on_step=True)
        self._tick, self._tokens = now, 0
        self.log("train/lr", self.optimizers().param_groups[0]["lr"], on_step=True)
        for key, value in self.stats.items():
            if key != "samples":
                self.log(f"train/{key}", float(value), on_step=True, reduce_fx="sum")

    def validation_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss, _ = self.loss(batch)
        # weighted by the batch's real samples: the padding that keeps the ranks of a
        # multi-process run in step (datamodule.padding_of) weighs nothing in the mean
        real = batch.get("real_samples")
        self.log("val/loss", loss, on_epoch=True, prog_bar=True, sync_dist=True,
                 batch_size=int(real) if real is not None else batch["input_ids"].size(0))
        return loss

    # -- optimisation ------------------------------------------------------------------------
    def configure_optimizers(self):
        decay, no_decay = [], []
        for name, param in self.named_parameters():
            if not param.requires_grad:
                continue
            (no_decay if param.ndim < 2 or "norm" in name.lower() else decay).append(param)
        groups = [{"params": decay, "weight_decay": self.weight_decay},
                  {"params": no_decay, "weight_decay": 0.0}]
        optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=self.lr,
                                      betas=self.betas)
        warmup = int(self.warmup_ratio * self.total_steps)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: warmup_cosine(step, self.total_steps, warmup, self.min_lr_ratio))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None,
                                    gradient_clip_algorithm=None) -> None:
        """Under FSDP each rank holds a shard of every gradient, and Lightning 2.6 refuses
        norm clipping there ("gradient_clip_algorithm='norm' is currently not supported for
        FSDPPrecision"); FSDP's own `clip_grad_norm_` computes the global norm over all shards."""
        from torch.distributed.fsdp import FullyShardedDataParallel

        wrapped = getattr(self.trainer.strategy, "model", None)
        if isinstance(wrapped, FullyShardedDataParallel):
            if gradient_clip_val:
                wrapped.clip_grad_norm_(gradient_clip_val)
            return
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    # -- checkpoints -------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        bad = first_non_finite(checkpoint.get("state_dict", {}))
        if bad is not None:  # an update after the last finite loss can still blow the weights up
            self._stop_non_finite(f"weight {bad} is not finite")
        checkpoint["vtc_lab_model_signature"] = self.model_signature

    def _stop_non_finite(self, what: str) -> None:
        step = self.trainer.global_step if self._trainer is not None else "?"
        last = getattr(getattr(self._trainer, "checkpoint_callback", None), "last_model_path", "")
        kept = (f"the last good checkpoint, {last}, is kept" if last
                else "no checkpoint had been written yet")
        lr = self.optimizers().param_groups[0]["lr"] if self._trainer is not None else self.lr
        raise NonFiniteError(
            f"training stopped at step {step}: {what} (learning rate {lr:g}). Nothing "
            f"non-finite was saved or exported; {kept}. Lower optim.lr or set "
            f"optim.gradient_clip_val, and train into a new run_dir (a resumed run would "
            f"continue with the saved optimizer state).")

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get("vtc_lab_model_signature")
        if saved is not None and self.model_signature and saved != self.model_signature:
            diff = {k: (saved.get(k), self.model_signature.get(k))
                    for k in set(saved) | set(self.model_signature)
                    if saved.get(k) != self.model_signature.get(k)}
            raise ValueError(f"checkpoint was written for a different model config "
                             f"(checkpoint vs now): {diff}")
        # the head itself, also for checkpoints whose signature predates `char_slots`
        if "state_dict" not in checkpoint:  # sharded (FSDP) checkpoints: the strategy loads them
            return
        saved_head = checkpoint["state_dict"].get("char_head.weight")
        own_head = None if self.char_head is None else self.char_head.weight
        saved_shape = None if saved_head is None else tuple(saved_head.shape)
        own_shape = None if own_head is None else tuple(own_head.shape)
        if saved_shape != own_shape:
            raise ValueError(f"checkpoint's character-loss head (char_head.weight) is "
                             f"{saved_shape or 'absent'}, this run's is {own_shape or 'absent'}: "
                             f"resume with the optim.char_loss_weight (> 0 or 0) and renderer grid "
                             f"it was trained with, or train into a new run_dir")
