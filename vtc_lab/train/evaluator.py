"""`OpticalMemoryEvaluator`: run the inference loops on a benchmark subset during training.

It calls the same `vtc_lab.infer` code as `vtc-lab eval` (one code path, so numbers logged
during training and offline agree), with the weights being trained, on rank 0 only, every N
optimizer steps and/or at the end of validation. Metrics go to `eval/<benchmark>/<loop key>/<name>`
(`vtc_lab.infer.evaluate.loop_key`: the loop of the model's own memory is `memory`), at step =
training samples seen (the run's x axis, see `vtc_lab.tracking.lightning_logger`); a predictions
table and a few rendered memory images go to the MLflow run.

Its schema, `EvaluatorConfig` (the `evaluator` config group), lives in `vtc_lab.train.config`.
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Iterator
from typing import Any

from lightning.pytorch import Callback

from vtc_lab.train.config import EvaluatorConfig

log = logging.getLogger(__name__)


class OpticalMemoryEvaluator(Callback):
    """Lightning callback running `vtc_lab.infer` loops on the model being trained.

    `backbone` is the `vtc_lab.models.Backbone` whose `.model` is being trained (the same
    object, so the current weights are evaluated); when omitted, `pl_module.backbone` is used.
    `reading` is the `vtc_lab.models.reading.ReadingSpec` the model is trained on (renderer,
    system prompt, image position, page pixel cap): the loops feed the model exactly that.
    `train()` passes the one it records in run.json and the export; without one (a bare
    callback in a test), the renderer's defaults, no system turn, images first, uncapped pages.
    `run` is the `vtc_lab.tracking` RunHandle;
    without one, metrics go to the trainer's loggers and tables/images are skipped.
    `memory` is what the model is trained to read (optim.memory; None: unknown), which names
    the metric keys. `samples_per_step` (training samples per optimizer step, all ranks) turns
    the step into samples seen; None: the datamodule's batch size x accumulation x world size.
    """

    def __init__(self, cfg: EvaluatorConfig, backbone: Any = None, reading: Any = None,
                 run: Any = None, memory: str | None = None,
                 samples_per_step: int | None = None) -> None:
        super().__init__()
        if reading is None:
            from vtc_lab.models.reading import ReadingSpec
            from vtc_lab.render.config import RenderConfig

            reading = ReadingSpec(RenderConfig(), None, "before", None)
        self.cfg = cfg
        self.backbone = backbone
        self.reading = reading
        self.run = run
        self.memory = memory
        self.samples_per_step = samples_per_step
        self.history: list[tuple[int, dict[str, float]]] = []
        self._last_step: int | None = None
        self._problems: dict[str, list] | None = None

    # -- Lightning hooks -------------------------------------------------------------------
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        n = self.cfg.every_n_steps
        step = trainer.global_step
        if self.cfg.enabled and n and step > 0 and step % n == 0 and step != self._last_step:
            self.evaluate(trainer, pl_module)

    def on_validation_end(self, trainer, pl_module) -> None:
        if self.cfg.enabled and self.cfg.at_validation_end and not trainer.sanity_checking:
            if trainer.global_step != self._last_step:
                self.evaluate(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        if self.cfg.enabled and self.cfg.at_train_end and trainer.global_step != self._last_step:
            self.evaluate(trainer, pl_module)

    # -- the work --------------------------------------------------------------------------
    def evaluate(self, trainer=None, pl_module=None) -> dict[str, float]:
        """Run every (benchmark, loop) once and log; returns the flat metrics dict (rank 0)."""
        step = int(trainer.global_step) if trainer is not None else 0
        self._last_step = step
        if trainer is not None and not trainer.is_global_zero:
            return {}
        backbone = self.backbone if self.backbone is not None else getattr(pl_module, "backbone", None)
        if backbone is None:
            raise ValueError("OpticalMemoryEvaluator needs a backbone (constructor argument or "
                             "pl_module.backbone)")
        from vtc_lab.infer.evaluate import evaluate_benchmarks, load_problems
        from vtc_lab.infer.engine import HFEngine

        if self._problems is None:
            self._problems = {name: load_problems(name, self.cfg.limit, self.cfg.subset_seed)
                              for name in self.cfg.benchmarks}
            if self.run is not None:  # the runs table's Dataset column shows what it evaluated on
                from vtc_lab.eval.benchmarks import benchmark_input

                for problems in self._problems.values():
                    self.run.log_dataset(**benchmark_input(problems), context="evaluation")
        reading = self.reading
        model = backbone.model
        # Restore each submodule's own mode afterwards (a frozen tower may be kept in eval mode).
        modes = [(m, m.training) for m in model.modules()]
        model.eval()
        try:
            # Training resumes from the random state it had before this evaluation, so a run
            # with the evaluator on follows the same trajectory as one without it.
            with preserved_rng(next(model.parameters()).device):
                engine = HFEngine(backbone)
                results = evaluate_benchmarks(
                    engine, self._problems,
                    [self.cfg.loop_config(m) for m in self.cfg.loops],
                    render_cfg=reading.renderer, system_prompt=reading.system_prompt,
                    image_position=reading.image_position,
                    image_max_pixels=reading.image_max_pixels, keep_images=self.cfg.log_images,
                    progress=False, reset_memory_peaks=False, model_memory=self.memory)
        finally:
            for module, training in modes:
                module.training = training
        metrics = results.metrics
        at = step
        if trainer is not None:  # the x axis of the learning curve
            per_step = self.samples_per_step
            if per_step is None:
                batch = getattr(getattr(trainer, "datamodule", None), "batch_size", None)
                per_step = (batch * trainer.accumulate_grad_batches * trainer.world_size
                            if batch else None)
            if per_step:
                at = step * per_step
                metrics["train/samples_seen"] = float(at)
        self.history.append((step, metrics))
        self._log(trainer, results, step, at)
        return metrics

    def _log(self, trainer, results, step: int, at: int) -> None:
        """Metrics into the run at `at` (samples seen); artifacts named by optimizer `step`;
        the trainer's own loggers get the optimizer step, as Lightning gives them."""
        if self.run is not None:
            self.run.log_metrics(results.metrics, step=at)
            if self.cfg.log_predictions:
                for key, rows in results.tables.items():
                    self.run.log_table(rows, f"eval/predictions/{key}/step_{step:07d}.json")
            for i, (name, image) in enumerate(results.memory_images(self.cfg.log_images)):
                self.run.log_image(image, f"eval/memory/step_{step:07d}/{name}")
        elif trainer is not None:
            for logger in trainer.loggers:
                logger.log_metrics(results.metrics, step=step)
        log.info("evaluator step %d: %s", step, {k: round(v, 4) for k, v in results.metrics.items()
                                                  if k.endswith("/accuracy")})


@contextlib.contextmanager
def preserved_rng(device: Any = None) -> Iterator[None]:
    """Run the block on a fork of the global random states (torch's CPU generator, the CUDA
    generator of `device` when it is a GPU, Python's `random` and NumPy's legacy global state),
    restored on exit. Sampling in the loops draws from per-request generators and greedy
    decoding draws nothing, but any draw inside an evaluation (a library's own sampling, a
    dropout left on) must not shift the data order or dropout masks of the training steps
    that follow."""
    import numpy as np
    import torch

    devices = [device] if device is not None and torch.device(device).type == "cuda" else []
    py_state, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)
