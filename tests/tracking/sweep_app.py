"""A minimal vtc-lab-shaped Hydra app for the tracking tests (no torch, sub-second jobs).

Same shape as the real apps: schema in the ConfigStore, `common` + `tracking` groups from the
package's conf/, `start_run` inside the plain function. `fail_when_x` injects a failing job.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from vtc_lab.tracking import TrackingConfig, start_run


@dataclass
class RendererStub:
    font_size: int = 9
    dpi: int = 72


@dataclass
class SweepAppConfig:
    output_root: str = "vtc-runs"
    x: int = 1
    y: int = 1
    memory: str = "optical"
    seed: int = 0
    fail_when_x: Optional[int] = None
    objective: str = "score"
    sleep_s: float = 0.0
    renderer: RendererStub = field(default_factory=RendererStub)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


ConfigStore.instance().store(name="sweep_app_schema", node=SweepAppConfig)


def run_app(cfg: SweepAppConfig) -> dict[str, float]:
    with start_run(cfg.tracking, cfg, cfg.output_root) as run:
        if cfg.fail_when_x is not None and cfg.x == cfg.fail_when_x:
            raise RuntimeError(f"injected failure at x={cfg.x}")
        if cfg.sleep_s:  # a job that is still running when the test kills the sweep
            print(f"job x={cfg.x} running", flush=True)
            time.sleep(cfg.sleep_s)
        metrics = {"score": float(cfg.x * 10 + cfg.y + cfg.renderer.font_size)}
        run.log_metrics(metrics)
    return metrics


@hydra.main(version_base="1.3", config_path="sweep_conf", config_name="sweep_app")
def main(raw: DictConfig) -> float:
    cfg: SweepAppConfig = OmegaConf.to_object(raw)
    return run_app(cfg)[cfg.objective]


if __name__ == "__main__":
    main()
