"""`vtc-lab train`: Lightning SFT of a VLM backbone on a built dataset (thin Hydra entry point).

    vtc-lab train                                   # tiny Qwen3-VL, MATH500 fixture, CPU
    vtc-lab train model=tiny_glm4v trainer.max_steps=200
    vtc-lab train model=glyph model.path=/ckpt/Glyph trainer=deepspeed_zero3 data=openr1 ...
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from vtc_lab.cli._hydra import CONF_DIR
from vtc_lab.data.config import DataConfig
from vtc_lab.models.config import ModelConfig
from vtc_lab.render import RenderConfig
from vtc_lab.segment import SegmentationConfig
from vtc_lab.tracking.config import TrackingConfig
from vtc_lab.train.config import TrainerConfig
from vtc_lab.train.evaluator import EvaluatorConfig

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
    """Hardware, strategy and optimisation recipe (conf/trainer/)."""
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

    def __post_init__(self) -> None:
        if self.resume not in RESUME:
            raise ValueError(f"resume must be one of {RESUME}, got {self.resume!r}")
        if not isinstance(self.build_workers, int) or self.build_workers < 1:
            raise ValueError(f"build_workers must be an int >= 1, got {self.build_workers!r}")


ConfigStore.instance().store(name="train_schema", node=TrainConfig)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def _app(raw: DictConfig) -> float | None:
    from vtc_lab.train.run import train

    cfg: TrainConfig = OmegaConf.to_object(raw)
    return train(cfg).get("val/loss")


def _tracking_overrides(argv: list[str]) -> list[str]:
    """Overrides the Hydra tracking callback must see before the job starts (it opens the run):
    a resumed `run_dir` reopens its own MLflow run. (Ranks > 0 never track: see
    `vtc_lab.tracking.runs.launched_rank`.)"""
    from vtc_lab.train.run import resume_run_id

    if any(a.startswith(("tracking.mode=", "tracking.resume_run_id=")) for a in argv):
        return []
    run_dir = next((a.split("=", 1)[1] for a in argv if a.startswith("run_dir=")), None)
    run_id = resume_run_id(run_dir) if run_dir else None
    return [f"tracking.resume_run_id={run_id}"] if run_id else []


def main() -> float | None:
    # Lightning's DDP launcher starts ranks 1.. by re-running `python sys.argv[0] <args>`; the
    # `vtc-lab` dispatcher leaves a name that is not a file there, so point it at this module.
    sys.argv[0] = os.path.abspath(__file__)
    sys.argv += _tracking_overrides(sys.argv[1:])
    return _app()


if __name__ == "__main__":
    main()
