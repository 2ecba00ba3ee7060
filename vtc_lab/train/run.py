"""`train(cfg)`: dataset (built if missing) -> backbone -> Lightning fit -> export -> summary.

Resume model: everything of a run lives in `run_dir` (checkpoints/last.ckpt, export/, run.json
with the MLflow run id). Running again with the same run_dir continues from last.ckpt at the
saved step, in the same MLflow run, with the data stream positioned after the samples seen.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Optional

from vtc_lab import atomic
from vtc_lab.tracking.runs import launched_rank  # noqa: F401 - re-exported for callers

log = logging.getLogger(__name__)

RUN_INFO = "run.json"


def model_signature(cfg) -> dict:
    """What must match between a checkpoint and the model it is loaded into."""
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
    return sig


def _run_dir(cfg) -> Path:
    if cfg.run_dir:
        return Path(cfg.run_dir)
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir)
    except Exception:  # noqa: BLE001 - called outside a Hydra app (tests, notebooks)
        return Path(cfg.output_root) / "train" / time.strftime("%Y-%m-%d_%H-%M-%S")


def _dataset(cfg):
    """Open the configured dataset, building it first (build-data's config-hash rules)."""
    from vtc_lab.data.build import ensure_dataset
    from vtc_lab.data.config import BuildDataConfig
    from vtc_lab.data.shards import open_dataset

    if cfg.dataset_dir and not (Path(cfg.dataset_dir) / "manifest.json").is_file():
        # a typo here used to build the default fixture dataset at that path and train on it
        raise FileNotFoundError(
            f"dataset_dir={cfg.dataset_dir} is not a built dataset (no manifest.json there). "
            f"Check the path, build it first (vtc-lab build-data output_dir={cfg.dataset_dir} "
            f"data=...), or leave dataset_dir unset to train on the data config's own dataset "
            f"under <output_root>/datasets/ (built when missing).")
    build = BuildDataConfig(data=cfg.data, segmentation=cfg.segmentation, renderer=cfg.renderer,
                            model=cfg.model, tracking=cfg.tracking, output_root=cfg.output_root,
                            output_dir=cfg.dataset_dir, num_workers=cfg.build_workers,
                            progress=cfg.progress)
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


class RunDirError(ValueError):
    """A run directory file (run.json) that cannot be read; the message says what to do."""


def read_run_info(run_dir: str | os.PathLike) -> dict:
    """`<run_dir>/run.json` ({} when absent); a corrupt one is named with the way out."""
    path = Path(run_dir) / RUN_INFO
    if not path.exists():
        return {}
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(info, dict):
            raise ValueError(f"a JSON {type(info).__name__}, not an object")
        return info
    except (ValueError, UnicodeDecodeError) as exc:
        raise RunDirError(
            f"{path} is corrupt ({exc}). It records which MLflow run this run_dir logs into. "
            f"Restore it, or delete it to resume the checkpoints in a new MLflow run "
            f"(rm '{path}'), or train into another run_dir.") from exc


def resume_run_id(run_dir: str | os.PathLike) -> str | None:
    """The MLflow run of a resumable run_dir (has a checkpoint and run.json), else None."""
    from vtc_lab.train.checkpoints import candidates

    path = Path(run_dir)
    if not candidates(path / "checkpoints") or not (path / RUN_INFO).exists():
        return None
    return read_run_info(path).get("mlflow_run_id")


def _weights_dtype(cfg) -> str:
    """`auto`: float32 for 32-true and mixed precision (fp32 master weights), bf16 for bf16-true."""
    if cfg.model.dtype != "auto":
        return cfg.model.dtype
    return "bfloat16" if cfg.trainer.precision == "bf16-true" else "float32"


def _cpu_fsdp_strategy(**kwargs) -> Any:
    """An FSDPStrategy for CPU processes (gloo). Lightning 2.6's Trainer refuses
    `strategy=FSDPStrategy(...)` with `accelerator='cpu'` ("The strategy `fsdp` requires a GPU
    accelerator"), a check on the exact class only (lifting it: Lightning-AI/pytorch-lightning
    #21812); torch's FSDP itself shards over gloo on the CPU once given a CPU `device_id`. The
    subclass changes only that wrapping: the 2-process CPU run (trainer=fsdp_cpu) exercises the
    same sharding, sharded checkpoints, resume and export as a GPU run."""
    from lightning.pytorch.strategies import FSDPStrategy

    class CPUFSDPStrategy(FSDPStrategy):
        def _setup_model(self, model):
            # Lightning passes device_id=root_device.index (None on the CPU), and torch's FSDP
            # then looks for an accelerator ("FSDP needs a non-CPU accelerator device"); an
            # explicit CPU device_id is what it accepts. Wrapped here, Lightning's own
            # _setup_model keeps the wrapping and adds activation checkpointing as usual.
            import torch
            from torch.distributed.fsdp import FullyShardedDataParallel

            if not any(isinstance(m, FullyShardedDataParallel) for m in model.modules()):
                kwargs = dict(self.kwargs)
                self.kwargs.pop("auto_wrap_policy", None)
                model = FullyShardedDataParallel(
                    module=model, cpu_offload=self.cpu_offload,
                    mixed_precision=self.mixed_precision_config,
                    sharding_strategy=self.sharding_strategy, device_id=torch.device("cpu"),
                    **kwargs)
            return super()._setup_model(model)

    return CPUFSDPStrategy(**kwargs)


def build_strategy(tc, model) -> Any:
    """Lightning strategy object for the `trainer.strategy` name."""
    if tc.strategy == "ddp":
        from lightning.pytorch.strategies import DDPStrategy

        return DDPStrategy(process_group_backend=tc.process_group_backend,
                           find_unused_parameters=False)
    if tc.strategy == "fsdp":
        from lightning.pytorch.strategies import FSDPStrategy

        layers = {type(m) for name, m in model.named_modules()
                  if type(m).__name__.endswith(("DecoderLayer", "VisionBlock"))}
        # Sharded checkpoints (torch.distributed.checkpoint: one file per rank, no gather onto
        # rank 0). They also avoid Lightning 2.6's full-state-dict path, which sets
        # offload_to_cpu=True and crashes (SIGSEGV, use-after-free) when the shards live on
        # the CPU (Lightning-AI/pytorch-lightning#21804).
        kwargs = dict(auto_wrap_policy=layers, sharding_strategy="FULL_SHARD",
                      state_dict_type="sharded", process_group_backend=tc.process_group_backend)
        if tc.accelerator == "cpu":
            return _cpu_fsdp_strategy(**kwargs)
        return FSDPStrategy(**kwargs)
    if tc.strategy.startswith("deepspeed"):
        try:
            import deepspeed  # noqa: F401
        except ImportError as exc:
            raise ImportError(f"trainer.strategy={tc.strategy} needs DeepSpeed: "
                              f"pip install 'vtc-lab[deepspeed]'") from exc
    return tc.strategy


def _total_steps(cfg, train_samples: int, world: int) -> int:
    oc = cfg.optim
    if oc.max_steps > 0:
        return oc.max_steps
    per_step = oc.batch_size * oc.grad_accum * world
    return max(1, math.ceil(train_samples / per_step)) * oc.max_epochs


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


@dataclasses.dataclass
class RunPaths:
    """Where one training run lives (`run_dir`) and whether it continues an earlier attempt."""

    run_dir: Path
    last: Path
    """checkpoints/last.ckpt: written every checkpoint_every_n_steps and at the end."""
    info_path: Path
    """run.json: MLflow run id, dataset path, model signature, what the model reads (`reading`:
    what `eval train_run=` reads when the export lacks its reading.json)."""
    info: dict
    """run.json's content from an earlier attempt ({} on a fresh run)."""
    resume_from: Optional[Path]
    """The newest loadable checkpoint to continue from (None on a fresh run)."""

    @property
    def resuming(self) -> bool:
        return self.resume_from is not None


def _run_paths(cfg) -> RunPaths:
    """The run directory's layout; refuses a finished-or-killed run under resume=never."""
    from vtc_lab.train.checkpoints import candidates, resume_checkpoint

    run_dir = _run_dir(cfg)
    last = run_dir / "checkpoints" / "last.ckpt"
    if candidates(last.parent) and cfg.resume == "never":
        raise FileExistsError(f"{last.parent} holds checkpoints and resume=never; choose another "
                              f"run_dir")
    resume_from = resume_checkpoint(last.parent)  # the newest loadable one, saying what it skips
    info = read_run_info(run_dir)
    if resume_from is not None:
        log.info("resuming %s from %s", run_dir, resume_from)
    return RunPaths(run_dir, last, run_dir / RUN_INFO, info, resume_from)


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
    reading = reading_of(dataset, oc.image_max_pixels)
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
                       char_slots=char_slots, model_signature=model_signature(cfg))
    return Setup(dataset, backbone, datamodule, module, total, reading)


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
    samples_per_step = oc.batch_size * oc.grad_accum * tc.devices
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
        evaluator = OpticalMemoryEvaluator(cfg.evaluator, s.backbone, reading=s.reading, run=run)
        callbacks.append(evaluator)
    logger = lightning_logger(run)
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


def _record_start(run, s: Setup, paths: RunPaths) -> None:
    """run.json (what a resume and `eval train_run=` read) and the run's tags and params."""
    dataset_path = Path(s.dataset.path).resolve()
    paths.run_dir.mkdir(parents=True, exist_ok=True)
    atomic.write_json(paths.info_path, {**paths.info, "mlflow_run_id": getattr(run, "run_id", None),
                                        "tracking_uri": getattr(run, "tracking_uri", None),
                                        # absolute: `eval train_run=` reads it from any cwd
                                        "dataset": str(dataset_path),
                                        "model_signature": s.module.model_signature,
                                        "reading": s.reading.to_dict()})
    run.set_tags({"run_dir": str(paths.run_dir.resolve()), "dataset_path": str(dataset_path)})
    run.log_params({"train_samples": s.datamodule.train_samples,
                    "val_samples": s.datamodule.val_samples, "total_steps": s.total_steps})
    _log_dataset_stats(run, Path(s.dataset.path))


def fit(cfg, s: Setup, paths: RunPaths, run) -> tuple[Any, dict]:
    """Run Lightning (from last.ckpt when resuming); (trainer, final metrics + paths)."""
    trainer, evaluator = _lightning_trainer(cfg, s, paths, run)
    if trainer.is_global_zero:
        _record_start(run, s, paths)
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


def export(cfg, s: Setup, paths: RunPaths, run) -> Path:
    """The `save_pretrained` export under <run_dir>/export (sharded strategies: rebuilt from
    the consolidated checkpoint), tagged on the run."""
    from vtc_lab.models import save_backbone

    if cfg.trainer.strategy.startswith(("fsdp", "deepspeed")):
        out = export_from_checkpoint(cfg.model, paths.last, paths.run_dir / "export")
    else:
        out = save_backbone(s.backbone, paths.run_dir / "export")
    s.reading.write(out)  # what `vtc-lab eval` of this export feeds it
    run.set_tags({"export_path": str(out.resolve())})
    return out


def train(cfg) -> dict:
    """Train per `cfg` (a `vtc_lab.train.config.TrainConfig`): setup, fit, export; returns the
    final metrics and paths (printed as a summary on rank 0).

    The run directory is locked for the whole run (a second `train` into it is refused, naming
    this process); SIGTERM saves last.ckpt and ends with `TrainingTerminated` (exit 143)."""
    if launched_rank() != 0:  # DDP children: rank 0 holds the run directory's lock
        return _train(cfg)
    from vtc_lab.outputlock import OutputLock

    with OutputLock(_run_dir(cfg), job="vtc-lab train"):
        return _train(cfg)


def _train(cfg) -> dict:
    import lightning.pytorch as pl

    from vtc_lab.tracking import continue_run, start_run

    pl.seed_everything(cfg.optim.seed, workers=True, verbose=False)
    paths = _run_paths(cfg)
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
