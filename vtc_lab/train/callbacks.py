"""Small Lightning callbacks of the SFT loop."""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch.callbacks import Callback


class FinalCheckpoint(Callback):
    """Save `last.ckpt` at the final optimizer step when that step is off ModelCheckpoint's
    `every_n_train_steps` cadence, at the same point of the loop as ModelCheckpoint (so a run
    resumed from it counts and logs steps exactly as one resumed from a periodic save)."""

    def __init__(self, path: str | Path, every_n: int):
        self.path, self.every_n = Path(path), every_n

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step >= trainer.max_steps and step % self.every_n and not trainer.sanity_checking:
            trainer.save_checkpoint(str(self.path))
