"""`vtc-lab build-data`: segment + render traces into an SFT dataset (thin Hydra entry point)."""

from __future__ import annotations

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

TOKEN_COUNTERS = ("model", "qwen")
EXPORTS = (None, "llamafactory")


@dataclass
class BuildDataConfig:
    """The `build_data` app: where traces come from, how they are cut and rendered, where to."""

    data: DataConfig = field(default_factory=DataConfig)
    """Trace source and sample layout (conf/data/)."""
    segmentation: SegmentationConfig = field(default_factory=SegmentationConfig)
    """How each trace is cut into rounds (conf/segmentation/)."""
    renderer: RenderConfig = field(default_factory=RenderConfig)
    """How memory segments become pages (conf/renderer/)."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """Backbone whose tokenizer counts text tokens and whose processor rule counts vision tokens."""
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    """MLflow run of this build (params, metrics, stats plot)."""
    output_root: str = "vtc-runs"
    """Root of all vtc-lab outputs."""
    output_dir: str | None = None
    """Dataset directory; null = `<output_root>/datasets/<data.name>-<config hash>` (stats-only:
    `<output_root>/stats/<data.name>-<config hash>`), one directory per config."""
    # A literal `{config_hash}` in output_dir becomes the config hash: see
    # vtc_lab.data.build.dataset_dir and docs/data.md.
    num_workers: int = 1
    """Worker processes (each renders whole shards); the result is identical for any value."""
    problems_per_shard: int = 64
    """Traces per shard: the unit of resumption and of peak memory."""
    token_counter: str = "model"
    """Text tokens counted with the `model`'s own tokenizer, or `qwen` (the offline Qwen BPE of
    Qwen2/2.5/3(-VL); extra `qwen`) to quote the paper's numbers with a tiny model."""
    stats_only: bool = False
    """Only segment, render in memory and count: stats.json + stats.png, no images written."""
    export: str | None = None
    """`llamafactory`: also write the LLaMA-Factory sharegpt export under <dataset>/llamafactory."""
    overwrite: bool = False
    """Delete an existing dataset in output_dir (one with a manifest) and build from scratch."""
    render_cache: bool = True
    """Reuse rendered pages across runs, keyed by (segment text hash, render config hash)."""
    render_cache_dir: str | None = None
    """Where the cache lives; null = `<output_root>/cache/render`."""
    progress: bool = True
    """Show a tqdm progress bar."""

    def __post_init__(self) -> None:
        if not isinstance(self.num_workers, int) or self.num_workers < 1:
            raise ValueError(f"num_workers must be an int >= 1, got {self.num_workers!r}")
        if not isinstance(self.problems_per_shard, int) or self.problems_per_shard < 1:
            raise ValueError(f"problems_per_shard must be an int >= 1, got {self.problems_per_shard!r}")
        if self.token_counter not in TOKEN_COUNTERS:
            raise ValueError(f"token_counter must be one of {TOKEN_COUNTERS}, got {self.token_counter!r}")
        if self.export not in EXPORTS:
            raise ValueError(f"export must be one of {EXPORTS}, got {self.export!r}")
        if self.stats_only and self.export:
            raise ValueError("export needs images: it cannot be combined with stats_only=true")


ConfigStore.instance().store(name="build_data_schema", node=BuildDataConfig)


def run_build_data(cfg: BuildDataConfig) -> dict:
    """Build the dataset and record the run (params, metrics, stats plot) in MLflow."""
    import json
    from pathlib import Path

    from vtc_lab.data.build import build_dataset
    from vtc_lab.data.stats import dataset_input
    from vtc_lab.tracking import start_run

    with start_run(cfg.tracking, cfg, cfg.output_root, run_name=cfg.tracking.run_name) as run:
        metrics = build_dataset(cfg)
        out = Path(metrics["path"])
        run.log_metrics({k: v for k, v in metrics.items() if k.startswith("data/")})
        stats = json.loads((out / "stats.json").read_text(encoding="utf-8"))
        run.log_metrics({f"data/segments_hist/{n}": count
                         for n, count in stats["segments_per_problem"].items()})
        run.log_metrics({f"data/skipped/{reason}": count for reason, count in stats["skipped"].items()})
        run.set_tags({"dataset_path": str(out.resolve()), "dataset_config_hash": metrics["config_hash"]})
        run.log_dataset(**dataset_input(out), context="build")
        for name in ("stats.json", "stats.png", "manifest.json"):
            if (out / name).exists():
                run.log_artifact(out / name, subdir="dataset")
    return metrics


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="build_data")
def main(raw: DictConfig) -> float | None:
    cfg: BuildDataConfig = OmegaConf.to_object(raw)
    return run_build_data(cfg).get("data/compression_ratio")


if __name__ == "__main__":
    main()
