"""Small Lightning callbacks of the SFT loop."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback, TQDMProgressBar

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


class ProgressLog(Callback):
    """A plain log line every `every_s` seconds (step, loss, samples/s, ETA) for runs without a
    progress bar: jobs that run side by side (the toy sweep) would garble each other's bars,
    and a log file or a Slurm job's output wants lines, not carriage returns."""

    def __init__(self, label: str, total_steps: int, every_s: float = 30.0, samples_per_step: int = 1):
        self.label = label
        self.total_steps = total_steps
        self.every_s = every_s
        self.samples_per_step = samples_per_step
        self._t0: float | None = None
        self._step0 = 0
        self._last = 0.0

    def on_train_start(self, trainer, pl_module) -> None:
        self._t0 = self._last = time.monotonic()
        self._step0 = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.monotonic()
        step = trainer.global_step
        if self._t0 is None or not trainer.is_global_zero or (
                now - self._last < self.every_s and step < self.total_steps):
            return
        self._last = now
        done = step - self._step0
        rate = done / (now - self._t0) if now > self._t0 else 0.0
        eta = (self.total_steps - step) / rate if rate > 0 else float("nan")
        loss = trainer.callback_metrics.get("train/loss")
        logging.getLogger("vtc_lab.train").info(
            "%s step %d/%d  loss %s  %.1f samples/s  eta %s", self.label, step, self.total_steps,
            f"{float(loss):.4f}" if loss is not None else "-", rate * self.samples_per_step,
            "-" if math.isnan(eta) else f"{eta / 60:.1f} min")


def one_line_per_log_message() -> None:
    """Lightning's INFO lines ("GPU available: ...") printed once, not twice. `import lightning`
    gives its logger its own console handler ("INFO: ..."), and the records also reach the
    root logger, where Hydra's handlers print them again (and keep them in the job's log file).
    Once the root logger has handlers, Lightning's own is dropped (call before the Trainer)."""
    if not logging.getLogger().hasHandlers():
        return
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if type(handler) is logging.StreamHandler:
                logger.removeHandler(handler)
        logger.propagate = True


class StepProgressBar(TQDMProgressBar):
    """Lightning's tqdm bar counting optimizer steps to `max_steps` for the whole job, with the
    loss and samples/s. The default bar counts batches per epoch, and this loop has no epochs
    (`max_epochs=-1`, so it read "Epoch 0/-2"): one bar per job, at the step the run is at."""

    def __init__(self, samples_per_step: int = 1):
        super().__init__()
        self.samples_per_step = samples_per_step
        self._t0 = 0.0
        self._step0 = 0

    def on_train_start(self, trainer, pl_module) -> None:
        super().on_train_start(trainer, pl_module)
        self._t0, self._step0 = time.monotonic(), trainer.global_step
        bar = self.train_progress_bar
        bar.reset(total=trainer.max_steps)
        bar.n = trainer.global_step  # a resumed run starts where it stopped
        bar.set_description("train")

    def on_train_epoch_start(self, trainer, *_: Any) -> None:
        pass  # one bar for the job, not one per pass over the data

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        bar = self._train_progress_bar
        if bar is None or bar.disable:
            return
        bar.n = trainer.global_step
        bar.set_postfix(self._postfix(trainer, pl_module))

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        pass

    def on_validation_end(self, trainer, pl_module) -> None:
        super().on_validation_end(trainer, pl_module)
        bar = self._train_progress_bar
        if bar is not None and not bar.disable and trainer.state.fn == "fit":
            bar.set_postfix(self._postfix(trainer, pl_module))

    def _postfix(self, trainer, pl_module) -> dict:
        metrics = {k: v for k, v in self.get_metrics(trainer, pl_module).items() if k != "v_num"}
        elapsed = time.monotonic() - self._t0
        done = trainer.global_step - self._step0
        if elapsed > 0 and done > 0:
            metrics["samples/s"] = f"{done * self.samples_per_step / elapsed:.1f}"
        return metrics
