"""`vtc-lab build-data`: segment + render traces into an SFT dataset (thin Hydra entry point)."""

from __future__ import annotations

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig

from vtc_lab.cli._hydra import CONF_DIR
from vtc_lab.configcheck import validate
from vtc_lab.data.config import BuildDataConfig

ConfigStore.instance().store(name="build_data_schema", node=BuildDataConfig)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="build_data")
def main(raw: DictConfig) -> float | None:
    from vtc_lab.data.build import run_build_data

    cfg: BuildDataConfig = validate(raw)  # + unknown keys, non-finite numbers
    return run_build_data(cfg).get("data/compression_ratio")


if __name__ == "__main__":
    main()
