"""`vtc-lab train`: Lightning SFT of a VLM backbone on a built dataset (thin Hydra entry point).

    vtc-lab train                                   # tiny Qwen3-VL, MATH500 fixture, CPU
    vtc-lab train model=tiny_glm4v optim.max_steps=200
    vtc-lab train experiment=toy seeds=3            # each configuration with seeds 0, 1, 2
    vtc-lab train model=glyph model.path=/ckpt/Glyph trainer=deepspeed_zero3 data=openr1 ...
"""

from __future__ import annotations

import os
import sys

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig

from vtc_lab.cli._hydra import CONF_DIR
from vtc_lab.cli._seeds import expand_seeds
from vtc_lab.configcheck import validate
from vtc_lab.train.config import TrainConfig

ConfigStore.instance().store(name="train_schema", node=TrainConfig)
SEED_KEY = "optim.seed"
"""What `seeds=N` sweeps (see `vtc_lab.cli._seeds`): data order, dropout, the split."""


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def _app(raw: DictConfig) -> float | None:
    from vtc_lab.train.run import train

    cfg: TrainConfig = validate(raw)  # + unknown keys, non-finite numbers
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
    sys.argv[1:] = expand_seeds(sys.argv[1:], SEED_KEY)
    sys.argv += _tracking_overrides(sys.argv[1:])
    return _app()


if __name__ == "__main__":
    main()
