"""`vtc-lab eval`: run the optical / text / none loops of a saved model on a benchmark.

    vtc-lab eval model=local model.path=/ckpt/VTC-R1-Glyph benchmark=aime25 loops=[optical,text]
    vtc-lab eval -m loop=optical,text,none benchmark.limit=50
    vtc-lab eval ... seeds=3                        # each configuration with loop.seed 0, 1, 2
    vtc-lab eval task=transcribe benchmark.limit=20 # CER of transcribed pages (no loops)

The work is `vtc_lab.infer.offline.evaluate` (see there for what is written and logged).
"""

from __future__ import annotations

import sys

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig

from vtc_lab.cli._hydra import CONF_DIR
from vtc_lab.cli._seeds import expand_seeds
from vtc_lab.configcheck import validate
from vtc_lab.infer.config import EvalConfig

ConfigStore.instance().store(name="eval_schema", node=EvalConfig)
SEED_KEY = "loop.seed"
"""What `seeds=N` sweeps (see `vtc_lab.cli._seeds`): every round's sampling seed."""


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="eval")
def _app(raw: DictConfig) -> float | None:
    from vtc_lab.infer.evaluate import metric_key
    from vtc_lab.infer.offline import evaluate, resolve_model, summary_table

    cfg: EvalConfig = resolve_model(validate(raw))  # + unknown keys, non-finite numbers
    metrics = evaluate(cfg)
    if cfg.task == "transcribe":
        for key, value in sorted(metrics.items()):
            print(f"{key:<48}{value:>12.4g}", flush=True)
        return metrics.get(f"eval/{cfg.benchmark.name}/transcribe/cer")
    modes = [c.mode for c in cfg.loop_configs]
    print(summary_table(metrics, cfg.benchmark.name, modes, cfg.memory), flush=True)
    return metrics.get(metric_key(cfg.benchmark.name, modes[0], "accuracy", cfg.memory))


def main() -> float | None:
    sys.argv[1:] = expand_seeds(sys.argv[1:], SEED_KEY)
    return _app()


if __name__ == "__main__":
    main()
