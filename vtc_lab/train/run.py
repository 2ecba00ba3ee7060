"""`train(cfg)`: run directory (decided once, locked) -> setup -> Lightning fit -> export ->
summary. The stages live in their own modules: `rundir` (where a run lives, resume), `setup`
(dataset, backbone, modules), `strategy` (Lightning strategies), `export` (the HF export).

Resume model: see `vtc_lab.train.rundir`. Running again with the same run_dir continues from
last.ckpt at the saved step, in the same MLflow run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from vtc_lab import atomic
from vtc_lab.tracking.runs import launched_rank
from vtc_lab.train.export import export, export_from_checkpoint  # noqa: F401 - re-exported
from vtc_lab.train.rundir import (  # noqa: F401 - re-exported for callers
    RUN_INFO,
    RunDirError,
    RunPaths,
    read_run_info,
    resolve_run_dir,
    resume_run_id,
    run_paths,
)
from vtc_lab.train.setup import Setup, model_signature, reading_of, setup  # noqa: F401
from vtc_lab.train.strategy import build_strategy


def _summary(result: dict) -> str:
    from vtc_lab.tracking.report import eval_table, eval_table_header

    lines = ["", "=== vtc-lab train: done ==="]
    for key in ("train/loss", "val/loss", "steps", "checkpoint", "export", "mlflow_run_id"):
        if result.get(key) is not None:
            value = result[key]
            lines.append(f"  {key:<14} {value:.4f}" if isinstance(value, float) else f"  {key:<14} {value}")
    # the last in-training evaluation, one row per benchmark/loop (optical vs text side by side)
    table = eval_table(result)
    if table:
        lines += [f"  last evaluation (step {result.get('eval_step')}):", eval_table_header(), *table]
    if result.get("tracking_uri"):
        lines.append(f"  open the MLflow UI: mlflow ui --backend-store-uri {result['tracking_uri']}")
    return "\n".join(lines)


def _log_dataset_stats(run, path: Path) -> None:
    """Log the trained-on dataset's compression and round statistics into the training run, so
    a sweep's report can plot them next to the training and evaluation metrics, and record it
    as the run's dataset input (MLflow's Dataset column)."""
    from vtc_lab.data.build import dataset_metrics
    from vtc_lab.data.stats import dataset_input

    run.log_dataset(**dataset_input(path), context="training")
    stats_file = path / "stats.json"
    if stats_file.exists():
        run.log_metrics(dataset_metrics(json.loads(stats_file.read_text())))
    if (path / "stats.png").exists():
        run.log_artifact(path / "stats.png", "dataset")


def _lightning_trainer(cfg, s: Setup, paths: RunPaths, run) -> tuple[Any, Any]:
    """(pl.Trainer, evaluator callback or None) bound to the run's logger and checkpoints."""
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import ModelCheckpoint

    from vtc_lab.tracking import lightning_logger
    from vtc_lab.train.callbacks import (FinalCheckpoint, ProgressLog, SaveOnTerminate,
                                         StepProgressBar, one_line_per_log_message)
    from vtc_lab.train.checkpoints import AtomicCheckpointIO

    tc, oc = cfg.trainer, cfg.optim
    callbacks: list = [ModelCheckpoint(dirpath=paths.last.parent, filename="step-{step}",
                                       save_last=True,
                                       auto_insert_metric_name=False,  # step-8, not step-step=8
                                       every_n_train_steps=oc.checkpoint_every_n_steps,
                                       save_top_k=1, monitor=None),
                       FinalCheckpoint(paths.last, oc.checkpoint_every_n_steps),
                       SaveOnTerminate(paths.last)]
    # training samples one optimizer step consumes, all ranks: the x axis of every logged curve
    samples_per_step = oc.batch_size * oc.grad_accum * tc.devices * tc.num_nodes
    if not cfg.progress:
        label = f"run {paths.run_dir.name} ({oc.memory} memory)"
        callbacks.append(ProgressLog(label, s.total_steps, samples_per_step=samples_per_step))
    else:
        callbacks.append(StepProgressBar(samples_per_step))
    evaluator = None
    if cfg.evaluator.enabled:
        from vtc_lab.train.evaluator import OpticalMemoryEvaluator

        if cfg.data.source == "toy" and "toy" in cfg.evaluator.benchmarks:
            from vtc_lab.eval.benchmarks import register_toy_benchmark

            register_toy_benchmark(cfg.data.toy)  # held out from the task trained on
        evaluator = OpticalMemoryEvaluator(cfg.evaluator, s.backbone, reading=s.reading, run=run,
                                           memory=oc.memory, samples_per_step=samples_per_step)
        callbacks.append(evaluator)
    logger = lightning_logger(run, samples_per_step)
    one_line_per_log_message()
    trainer = pl.Trainer(
        accelerator=tc.accelerator, devices=tc.devices, num_nodes=tc.num_nodes,
        strategy=build_strategy(tc, s.backbone.model), precision=tc.precision,
        max_steps=s.total_steps, max_epochs=-1, accumulate_grad_batches=oc.grad_accum,
        gradient_clip_val=oc.gradient_clip_val or None,
        val_check_interval=oc.val_check_interval * oc.grad_accum, check_val_every_n_epoch=None,
        log_every_n_steps=oc.log_every_n_steps, logger=logger if logger is not None else False,
        callbacks=callbacks, enable_progress_bar=cfg.progress, deterministic=tc.deterministic,
        default_root_dir=str(paths.run_dir), num_sanity_val_steps=0, use_distributed_sampler=False,
        # complete-or-absent checkpoint files (DeepSpeed writes its own shard directories)
        plugins=[] if tc.strategy.startswith("deepspeed") else [AtomicCheckpointIO()])
    return trainer, evaluator


def _record_start(run, s: Setup, paths: RunPaths, memory: str, seed: int) -> None:
    """run.json (what a resume and `eval train_run=` read) and the run's tags and params."""
    from vtc_lab.tracking.runs import job_config_key

    dataset_path = Path(s.dataset.path).resolve()
    paths.run_dir.mkdir(parents=True, exist_ok=True)
    atomic.write_json(paths.info_path, {**paths.info, "mlflow_run_id": getattr(run, "run_id", None),
                                        "tracking_uri": getattr(run, "tracking_uri", None),
                                        # absolute: `eval train_run=` reads it from any cwd
                                        "dataset": str(dataset_path),
                                        "model_signature": s.module.model_signature,
                                        # what `eval train_run=` names the metric keys by
                                        "memory": memory,
                                        # the model's replicate identity, which the evaluations
                                        # of it log (`vtc_lab.models.reading.run_identity`)
                                        "seed": seed,
                                        "config_key": job_config_key(getattr(run, "tracking_uri", None)),
                                        "reading": s.reading.to_dict()})
    run.set_tags({"run_dir": str(paths.run_dir.resolve()), "dataset_path": str(dataset_path)})
    run.log_params({"train_samples": s.datamodule.train_samples,
                    "val_samples": s.datamodule.val_samples, "total_steps": s.total_steps})
    _log_dataset_stats(run, Path(s.dataset.path))


def fit(cfg, s: Setup, paths: RunPaths, run) -> tuple[Any, dict]:
    """Run Lightning (from last.ckpt when resuming); (trainer, final metrics + paths)."""
    trainer, evaluator = _lightning_trainer(cfg, s, paths, run)
    if trainer.is_global_zero:
        _record_start(run, s, paths, cfg.optim.memory, cfg.optim.seed)
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from vtc_lab.train.callbacks import TrainingTerminated

    try:
        trainer.fit(s.module, datamodule=s.datamodule,
                    ckpt_path=str(paths.resume_from) if paths.resuming else None)
    except SIGTERMException as exc:  # Lightning's has exit code None: the job looked finished
        stop = TrainingTerminated(paths.last, trainer.global_step)
        print(f"[vtc-lab] {stop}", file=sys.stderr, flush=True)
        raise stop from exc
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    result: dict[str, Any] = {**metrics, "steps": int(trainer.global_step),
                              "checkpoint": str(paths.last), "run_dir": str(paths.run_dir),
                              "mlflow_run_id": getattr(run, "run_id", None),
                              "tracking_uri": getattr(run, "tracking_uri", None),
                              "resumed": paths.resuming,
                              **{f"data/{k}": v for k, v in s.module.stats.items()}}
    if evaluator is not None and evaluator.history:
        result["eval_step"], last_eval = evaluator.history[-1]
        result.update(last_eval)
    return trainer, result


def train(cfg) -> dict:
    """Train per `cfg` (a `vtc_lab.train.config.TrainConfig`): setup, fit, export; returns the
    final metrics and paths (printed as a summary on rank 0).

    The run directory is locked for the whole run (a second `train` into it is refused, naming
    this process); SIGTERM saves last.ckpt and ends with `TrainingTerminated` (exit 143)."""
    run_dir = resolve_run_dir(cfg)  # once: the lock and the run must name the same directory
    if launched_rank() != 0:  # DDP children: rank 0 holds the run directory's lock
        return _train(cfg, run_dir)
    from vtc_lab.outputlock import OutputLock

    with OutputLock(run_dir, job="vtc-lab train"):
        return _train(cfg, run_dir)


def _train(cfg, run_dir: Path) -> dict:
    import lightning.pytorch as pl

    from vtc_lab.tracking import continue_run, start_run

    pl.seed_everything(cfg.optim.seed, workers=True, verbose=False)
    paths = run_paths(cfg, run_dir)
    if paths.resuming:  # a resumed attempt logs into the run its checkpoint belongs to
        continue_run(cfg.tracking, paths.info.get("mlflow_run_id"))
    s = setup(cfg)
    with start_run(cfg.tracking, cfg, cfg.output_root, run_name=cfg.tracking.run_name) as run:
        trainer, result = fit(cfg, s, paths, run)
        if trainer.is_global_zero:
            if cfg.export:
                result["export"] = str(export(cfg, s, paths, run))
            print(_summary(result), flush=True)
    return result
