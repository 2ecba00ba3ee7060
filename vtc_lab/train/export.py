"""The `save_pretrained` export of a training run (`<run_dir>/export`) and the export of a
Lightning checkpoint (what sharded strategies export from)."""

from __future__ import annotations

from pathlib import Path

def export(cfg, s, paths, run) -> Path:
    """The `save_pretrained` export under <run_dir>/export (sharded strategies: rebuilt from
    the consolidated checkpoint), tagged on the run."""
    from vtc_lab.models import save_backbone
    from vtc_lab.models.reading import EXPORT_DIR

    if cfg.trainer.strategy.startswith(("fsdp", "deepspeed")):
        out = export_from_checkpoint(cfg.model, paths.last, paths.run_dir / EXPORT_DIR)
    else:
        out = save_backbone(s.backbone, paths.run_dir / EXPORT_DIR)
    s.reading.write(out)  # what `vtc-lab eval` of this export feeds it
    run.set_tags({"export_path": str(out.resolve())})
    return out


def export_from_checkpoint(model_cfg, ckpt: Path, out: Path) -> Path:
    """HF export of a Lightning checkpoint: a fresh backbone of `model_cfg` gets the checkpoint's
    full weights (FSDP sharded checkpoints are stitched together in this process; DeepSpeed
    ZeRO checkpoint directories are consolidated to fp32 first)."""
    from vtc_lab.models import load_backbone, save_backbone
    from vtc_lab.models.checkpoint import is_sharded_checkpoint, load_checkpoint_weights

    ckpt = Path(ckpt)
    if ckpt.is_dir() and not is_sharded_checkpoint(ckpt):  # DeepSpeed: one shard per rank
        from lightning.pytorch.utilities.deepspeed import convert_zero_checkpoint_to_fp32_state_dict

        single = ckpt.with_name(ckpt.name + ".fp32.pt")
        convert_zero_checkpoint_to_fp32_state_dict(str(ckpt), str(single))
        ckpt = single
    backbone = load_backbone(model_cfg)
    # our own file (it holds the run's hyper-parameters and optimizer state, not only tensors)
    load_checkpoint_weights(backbone.model, ckpt, weights_only=False)
    return save_backbone(backbone, out)
