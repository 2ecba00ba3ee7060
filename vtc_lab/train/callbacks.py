"""Small Lightning callbacks of the SFT loop."""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch.callbacks import Callback

TERMINATED_EXIT_CODE = 143  # 128 + SIGTERM, what a shell reports for a job ended by SIGTERM


class TrainingTerminated(SystemExit):
    """SIGTERM ended training after `last.ckpt` was saved. A SystemExit with a non-zero code:
    Lightning's own SIGTERM exception has code None, so a terminated job exited 0 as if it
    had finished."""

    def __init__(self, checkpoint: Path, step: int):
        super().__init__(TERMINATED_EXIT_CODE)
        self.message = (f"training terminated by SIGTERM at step {step}; saved {checkpoint}. "
                        f"Run the same command (same run_dir) to resume from there.")

    def __str__(self) -> str:
        return self.message


class SaveOnTerminate(Callback):
    """On SIGTERM (Slurm preemption, `kill`, a stopped sweep) save `last.ckpt` where the loop
    stopped, so the resumed run loses nothing."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        if isinstance(exception, SIGTERMException) and trainer.global_step > 0:
            trainer.save_checkpoint(str(self.path))


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
