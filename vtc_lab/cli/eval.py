"""`vtc-lab eval`: run the optical / text / none loops of a saved model on a benchmark.

    vtc-lab eval model=local model.path=/ckpt/VTC-R1-Glyph benchmark=aime25 loops=[optical,text]
    vtc-lab eval -m loop=optical,text,none benchmark.limit=50

The work is `vtc_lab.infer.offline.evaluate` (see there for what is written and logged).
"""

from __future__ import annotations

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig

from vtc_lab.cli._hydra import CONF_DIR
from vtc_lab.configcheck import validate
from vtc_lab.infer.config import EvalConfig

ConfigStore.instance().store(name="eval_schema", node=EvalConfig)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="eval")
def main(raw: DictConfig) -> float | None:
    from vtc_lab.infer.offline import evaluate, summary_table

    cfg: EvalConfig = validate(raw)  # + unknown keys, non-finite numbers
    metrics = evaluate(cfg)
    modes = [c.mode for c in cfg.loop_configs]
    print(summary_table(metrics, cfg.benchmark.name, modes), flush=True)
    return metrics.get(f"eval/{cfg.benchmark.name}/{modes[0]}/accuracy")


if __name__ == "__main__":
    main()
