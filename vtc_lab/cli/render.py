"""`vtc-lab render`: render texts and report the compression (thin Hydra entry point).

  vtc-lab render                                    # MATH500 solutions, reference renderer
  vtc-lab render 'text="Let $x^2 = 4$."' save_images=true   # quoting: docs/render.md
  vtc-lab render benchmark=gsm8k                    # any `benchmark` preset, as in `vtc-lab eval`
  vtc-lab render file=traces.parquet field=reasoning stats_only=true
  vtc-lab render -m renderer=vtcr1,dense,mono       # compare presets (MLflow: one run each)
"""

from __future__ import annotations

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig

from vtc_lab.cli._hydra import CONF_DIR
from vtc_lab.configcheck import validate
from vtc_lab.data.render_app import RenderAppConfig
from vtc_lab.render.vision import get_spec

ConfigStore.instance().store(name="render_schema", node=RenderAppConfig)


def text_tokenizer(cfg: RenderAppConfig):
    """The `TextTokenizer` that counts the text side of the compression ratio."""
    from vtc_lab.render.text_tokens import HFTextTokenizer, qwen_tokenizer

    if cfg.tokenizer == "qwen":
        return qwen_tokenizer()
    from vtc_lab.models import ModelConfig, load_tokenizer

    model = ModelConfig(name="render-tokenizer", source="pretrained", arch="auto",
                        path=cfg.tokenizer_path)
    return HFTextTokenizer(load_tokenizer(model))


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="render")
def main(raw: DictConfig) -> float | None:
    from vtc_lab.data.render_app import run_render

    cfg: RenderAppConfig = validate(raw)  # + unknown keys, non-finite numbers
    metrics = run_render(cfg, text_tokenizer(cfg))
    return metrics.get(f"render/{get_spec(cfg.backbones[0]).name}/ratio_pooled")


if __name__ == "__main__":
    main()
