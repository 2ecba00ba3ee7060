"""`vtc-lab serve`: an OpenAI-compatible server over a local checkpoint (see `vtc_lab.serve`).

    vtc-lab serve model=local model.path=vtc-runs/.../export port=8000
    vtc-lab serve train_run=vtc-runs/train/my-run served_model_name=vtc-r1 host=0.0.0.0
    vtc-lab eval engine=openai engine.base_urls=[http://localhost:8000/v1] ...
"""

from __future__ import annotations

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig

from vtc_lab.cli._hydra import CONF_DIR
from vtc_lab.configcheck import validate
from vtc_lab.serve.config import ServeConfig

ConfigStore.instance().store(name="serve_schema", node=ServeConfig)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="serve")
def main(raw: DictConfig) -> None:
    from vtc_lab.serve.run import serve

    cfg: ServeConfig = validate(raw)  # + unknown keys, non-finite numbers
    serve(cfg)


if __name__ == "__main__":
    main()
