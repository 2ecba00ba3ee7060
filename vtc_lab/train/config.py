"""The train stage's schemas: the `trainer` group (the machine), the `optim` group (the
recipe), the `evaluator` group, and `TrainConfig`, the `train` app.

The machine and the recipe are apart so that `trainer=gpu` changes only where a run trains, not
what it trains: `optim=paper` is the VTC-R1 recipe (lr 1e-5, cosine, 10 % warmup, 1 epoch,
batch 1 x accumulation 8 per device, cutoff 32,768 tokens, images capped at 262,144 px) on any
machine. Presets hold only what differs from these defaults. No torch import here.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from vtc_lab.data.config import BuildDataConfig, DataConfig
from vtc_lab.infer.config import MODES, LoopConfig
from vtc_lab.models.config import ModelConfig
from vtc_lab.render.config import RenderConfig
from vtc_lab.segment.config import SegmentationConfig
from vtc_lab.tracking.config import TrackingConfig

ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
STRATEGIES = ("auto", "ddp", "ddp_spawn", "fsdp", "deepspeed_stage_2", "deepspeed_stage_3",
              "deepspeed_stage_3_offload")
PRECISIONS = ("32-true", "bf16-mixed", "bf16-true", "16-mixed")
TRUNCATIONS = ("truncate", "drop")
MEMORIES = ("optical", "text")


@dataclass
class TrainerConfig:
    """The machine a run trains on (`trainer` group, conf/trainer/*.yaml): accelerator, devices,
    strategy, precision, loader workers. Switching it never changes the experiment's recipe."""

    name: str = "cpu"
    """Preset name (shown in MLflow params)."""
    accelerator: str = "cpu"
    """Lightning accelerator: cpu | gpu | cuda | mps | auto."""
    devices: int = 1
    """Processes per node (GPUs, or CPU processes for DDP on CPU)."""
    num_nodes: int = 1
    """Nodes (multi-node needs an external launcher: torchrun / Slurm)."""
    strategy: str = "auto"
    """auto | ddp | ddp_spawn | fsdp | deepspeed_stage_2 | deepspeed_stage_3 | deepspeed_stage_3_offload."""
    process_group_backend: str | None = None
    """DDP backend override (gloo on CPU, nccl on GPU); null: Lightning's choice."""
    precision: str = "32-true"
    """32-true on CPU (weights are loaded float32); bf16-mixed / bf16-true on GPU."""
    num_workers: int = 0
    """DataLoader worker processes (image decoding + processor); 0 = in the training process."""
    deterministic: bool = False
    """torch deterministic algorithms (`torch.use_deterministic_algorithms`, through Lightning):
    for GPU kernels that are otherwise nondeterministic; slower, unmeasured here. CPU runs are
    bit-identical for a seed and thread count without it (docs/training.md, Determinism)."""
    threads: int | None = None
    """torch intra-op threads of each training process; null = torch's default (one per core).
    Jobs that run side by side (the toy sweep's two models) set 1 each: two processes whose
    thread pools both span every core wait on each other at every parallel op."""

    def __post_init__(self) -> None:
        if self.accelerator not in ACCELERATORS:
            raise ValueError(f"trainer.accelerator must be one of {ACCELERATORS}, got {self.accelerator!r}")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"trainer.strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"trainer.precision must be one of {PRECISIONS}, got {self.precision!r}")
        for name in ("devices", "num_nodes"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"trainer.{name} must be an int >= 1, got {value!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ValueError(f"trainer.threads must be null or an int >= 1, got {self.threads!r}")
        if self.num_workers < 0:
            raise ValueError(f"trainer.num_workers must be >= 0, got {self.num_workers}")


@dataclass
class OptimConfig:
    """The optimisation and SFT recipe (`optim` group, conf/optim/*.yaml): steps, batch, learning
    rate schedule, cutoff, validation and checkpoint cadence. The defaults train the tiny
    random-init backbones in minutes on one CPU; `optim=paper` is the VTC-R1 recipe."""

    name: str = "tiny"
    """Preset name (shown in MLflow params)."""
    max_steps: int = 40
    """Optimizer steps; -1 = run `max_epochs` over the data."""
    max_epochs: int = 1
    """Epochs when max_steps is -1 (the paper: 1)."""
    batch_size: int = 4
    """Samples per device per micro-batch."""
    grad_accum: int = 1
    """Micro-batches per optimizer step (the paper: 8)."""
    lr: float = 2.0e-3
    """Peak learning rate (the paper: 1e-5; a random-init tiny model needs ~1e-3)."""
    weight_decay: float = 0.0
    """AdamW weight decay (not applied to biases and norms)."""
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    """AdamW betas."""
    warmup_ratio: float = 0.1
    """Linear warmup as a fraction of the optimizer steps, then cosine to `min_lr_ratio`."""
    min_lr_ratio: float = 0.1
    """Final learning rate as a fraction of `lr`."""
    gradient_clip_val: float = 1.0
    """Clip the global gradient norm; 0 = off."""
    cutoff_len: int = 2048
    """Longest tokenized sample (prompt incl. vision tokens + target); longer ones follow
    `truncation`. The paper: 32,768."""
    truncation: str = "truncate"
    """Samples over `cutoff_len`: `truncate` the target's tail (only if every vision token and at
    least one target token still fit, else dropped) or `drop` them. Both are counted and logged."""
    val_fraction: float = 0.1
    """Fraction of PROBLEMS held out for val/loss (split by problem id hash, not by sample)."""
    val_max_samples: int = 32
    """Validation samples per evaluation (the first of the held-out split)."""
    val_check_interval: int = 20
    """Validate every N optimizer steps (and at the end)."""
    log_every_n_steps: int = 5
    """Logging cadence of train/* metrics, in optimizer steps."""
    checkpoint_every_n_steps: int = 20
    """Save a resumable Lightning checkpoint (last.ckpt) every N optimizer steps."""
    char_loss_weight: float = 0.0
    """Weight of the auxiliary per-vision-token character loss (needs a dataset built with
    `data.include_layouts=true`); 0 = off."""
    memory: str = "optical"
    """What the model learns to read its earlier rounds from. `optical` (the paper's SFT):
    sample k shows the pages of rounds 1..k-1 and its round ends the turn. `text` (the
    long-context baseline, one long generation cut into rounds): no pages; rounds 1..k-1 open
    the assistant turn as text (unsupervised) and only the final round ends the turn, exactly
    what the `text` loop feeds. One model cannot learn both: after round 1 the two ask for
    different next tokens (end of turn vs. round 2) in the same context, so the text baseline
    is its own run with the same budget (`conf/experiment/toy.yaml` sweeps this key)."""
    shuffle_buffer: int = 256
    """Streaming shuffle buffer (samples); 0 = dataset order."""
    seed: int = 0
    """Seed of data order, dropout and the split."""

    def __post_init__(self) -> None:
        if self.truncation not in TRUNCATIONS:
            raise ValueError(f"optim.truncation must be one of {TRUNCATIONS}, got {self.truncation!r}")
        for name in ("max_epochs", "batch_size", "grad_accum", "cutoff_len",
                     "val_check_interval", "log_every_n_steps", "checkpoint_every_n_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"optim.{name} must be an int >= 1, got {value!r}")
        if not isinstance(self.max_steps, int) or (self.max_steps < 1 and self.max_steps != -1):
            raise ValueError(f"optim.max_steps must be >= 1 or -1 (epochs), got {self.max_steps!r}")
        if not self.lr > 0:
            raise ValueError(f"optim.lr must be > 0, got {self.lr}")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"optim.warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"optim.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.memory not in MEMORIES:
            raise ValueError(f"optim.memory must be one of {MEMORIES}, got {self.memory!r}")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"optim.val_fraction must be in [0, 1), got {self.val_fraction}")
        for name in ("gradient_clip_val", "char_loss_weight", "weight_decay"):
            if getattr(self, name) < 0:
                raise ValueError(f"optim.{name} must be >= 0, got {getattr(self, name)}")
        if self.shuffle_buffer < 0 or self.val_max_samples < 0:
            raise ValueError("optim.shuffle_buffer and optim.val_max_samples must be >= 0")
        self.betas = [float(b) for b in self.betas]
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"optim.betas must be two numbers in [0, 1), got {self.betas}")


@dataclass
class EvaluatorConfig:
    enabled: bool = False
    """Run the loops during training at all."""

    every_n_steps: int = 0
    """Evaluate every N optimizer steps (global_step); 0 = only at validation end / train end."""

    at_validation_end: bool = True
    """Evaluate at the end of every validation epoch (not during the sanity check)."""

    at_train_end: bool = False
    """Evaluate once more when training finishes."""

    benchmarks: list[str] = field(default_factory=lambda: ["math500"])
    """Benchmarks to evaluate: registered names (`vtc_lab.eval` registry, e.g. math500, aime25,
    gsm8k) or paths to local jsonl files with `question`/`answer` fields."""

    limit: int = 8
    """Problems per benchmark (a seeded random subset); 0 = all (slow: the whole benchmark)."""

    subset_seed: int = 0
    """Seed of the subset choice, fixed so every evaluation sees the same problems."""

    loops: list[str] = field(default_factory=lambda: ["optical"])
    """Loop modes to run (`optical`, `text`, `none`), each logged under its own key."""

    loop: LoopConfig = field(default_factory=lambda: LoopConfig(
        max_rounds=2, max_new_tokens=256, do_sample=False, samples_per_problem=1))
    """Decoding settings and budgets of every evaluation loop (the `loop` schema itself, so each
    setting is declared once): `loop.mode` is replaced by each entry of `loops`; pages are capped
    like training's (`model.image_max_pixels`, through the run's reading spec). Cheap by
    default: 2 rounds x 256 tokens, greedy (successive evaluations differ only through the
    weights), one sample per problem."""

    log_predictions: bool = True
    """Log a predictions table (one row per problem and sample) per benchmark and loop."""

    log_images: int = 2
    """Rendered memory images to log per benchmark (optical loop, first problems); 0 = none."""

    def __post_init__(self) -> None:
        if self.every_n_steps < 0:
            raise ValueError(f"evaluator.every_n_steps must be >= 0, got {self.every_n_steps}")
        if self.limit < 0:
            raise ValueError(f"evaluator.limit must be >= 0, got {self.limit}")
        if not self.benchmarks:
            raise ValueError("evaluator.benchmarks must name at least one benchmark")
        if not self.loops:
            raise ValueError("evaluator.loops must name at least one loop")
        for mode in self.loops:
            if mode not in MODES:
                raise ValueError(f"evaluator.loops entries must be in {MODES}, got {mode!r}")
        if self.log_images < 0:
            raise ValueError(f"evaluator.log_images must be >= 0, got {self.log_images}")

    def loop_config(self, mode: str) -> LoopConfig:
        """`loop` for one loop mode."""
        return replace(self.loop, mode=mode)


RESUME = ("auto", "never")


@dataclass
class TrainConfig:
    """The `train` app: which data (built on demand), which backbone, how to train, where to log."""

    data: DataConfig = field(default_factory=DataConfig)
    """Trace source and sample layout (conf/data/); decides the dataset directory."""
    segmentation: SegmentationConfig = field(default_factory=SegmentationConfig)
    """How traces are cut into rounds when the dataset is built (conf/segmentation/)."""
    renderer: RenderConfig = field(default_factory=RenderConfig)
    """How memory segments become pages (conf/renderer/); also used by the evaluator."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The backbone to fine-tune (conf/model/)."""
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    """The machine: accelerator, devices, strategy, precision, workers (conf/trainer/)."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """The recipe: steps, batch, learning rate, cutoff, validation cadence (conf/optim/)."""
    evaluator: EvaluatorConfig = field(default_factory=EvaluatorConfig)
    """Optical-memory evaluation during training (conf/evaluator/)."""
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    """MLflow run (conf/tracking/)."""
    output_root: str = "vtc-runs"
    """Root of all vtc-lab outputs."""
    dataset_dir: str | None = None
    """Built dataset to train on; null = `<output_root>/datasets/<data.name>-<config hash>`
    (one per data/segmentation/renderer/tokenizer config, so sweeps never collide). Built first
    (same config-hash rules as `vtc-lab build-data`) when it does not exist."""
    build_workers: int = 1
    """Processes used when the dataset has to be built first."""
    run_dir: str | None = None
    """Checkpoints, export and run.json go here; null = the Hydra job directory. Point a rerun
    at the same run_dir to resume a killed run."""
    resume: str = "auto"
    """`auto`: continue from `<run_dir>/checkpoints/last.ckpt` (same MLflow run) if present;
    `never`: refuse to reuse a run_dir that has a checkpoint."""
    export: bool = True
    """Write a `save_pretrained` export (model + processor) to `<run_dir>/export` at the end."""
    progress: bool = True
    """Show Lightning's progress bar."""

    def dataset_spec(self) -> BuildDataConfig:
        """The build-data config of this run's dataset, the one place where train's settings
        become the builder's: `data` (its builder settings included), segmentation, renderer
        and model decide the config hash and so the directory; `dataset_dir`, `build_workers`
        and `progress` say where and how it is built when missing."""
        return BuildDataConfig(data=self.data, segmentation=self.segmentation,
                               renderer=self.renderer, model=self.model,
                               tracking=self.tracking, output_root=self.output_root,
                               output_dir=self.dataset_dir, num_workers=self.build_workers,
                               progress=self.progress)

    def environment_problems(self) -> list[str]:
        """What this machine or the outputs on disk rule out: a GPU trainer without the GPU, a
        run_dir another process is writing. Run by `vtc_lab.configcheck.validate` with the other
        config checks, before any run, directory or dataset is created; not in `__post_init__`,
        so every preset still composes on any machine."""
        found: list[str] = []
        accelerator = self.trainer.accelerator
        if accelerator in ("gpu", "cuda"):
            import torch

            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
            if count == 0:
                found.append(f"trainer.accelerator={accelerator} needs a CUDA GPU, but torch finds "
                             f"none on this machine; train on the CPU with trainer=cpu")
            elif self.trainer.devices > count:
                found.append(f"trainer.devices={self.trainer.devices} but this machine has "
                             f"{count} CUDA GPU(s); set trainer.devices={count}")
        elif accelerator == "mps":
            import torch

            if not torch.backends.mps.is_available():
                found.append("trainer.accelerator=mps needs Apple's MPS backend, which torch "
                             "does not find here; train on the CPU with trainer=cpu")
        if self.run_dir:
            from vtc_lab.configcheck import unwritable
            from vtc_lab.outputlock import locked_by_other

            if problem := unwritable("run_dir", self.run_dir):
                return [*found, problem]
            from vtc_lab.tracking.runs import launched_rank

            # DDP ranks > 0 re-run this check while rank 0 holds the lock of its own run_dir
            locked = locked_by_other(self.run_dir) if launched_rank() == 0 else None
            if locked is not None:
                found.append(f"run_dir={self.run_dir}: {locked}")
        return found

    def __post_init__(self) -> None:
        if self.resume not in RESUME:
            raise ValueError(f"resume must be one of {RESUME}, got {self.resume!r}")
        if not isinstance(self.build_workers, int) or self.build_workers < 1:
            raise ValueError(f"build_workers must be an int >= 1, got {self.build_workers!r}")
        sharded = self.trainer.strategy == "fsdp" or self.trainer.strategy.startswith("deepspeed_stage_3")
        ranks = self.trainer.devices * self.trainer.num_nodes
        if self.evaluator.enabled and sharded and ranks > 1:
            # the evaluator generates on rank 0 alone; with weights sharded over several ranks
            # it needs shards the others hold (measured on trainer=fsdp_cpu: rank 0 crashed in
            # the embedding's shard, rank 1 was left waiting in a barrier)
            raise ValueError(f"evaluator.enabled=true cannot run with trainer.strategy="
                             f"{self.trainer.strategy} on {ranks} ranks: the evaluator generates on "
                             f"rank 0 alone and the weights are sharded across the ranks; set "
                             f"evaluator=off and evaluate the export with vtc-lab eval, or train "
                             f"with trainer=ddp")
