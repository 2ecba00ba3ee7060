"""`vtc-lab report`: compare MLflow runs (an experiment, or one sweep) as tables and plots.

    vtc-lab report tracking.experiment=ablation_font_dpi          # every run of an experiment
    vtc-lab report tracking.experiment=toy sweep=latest           # the latest sweep's children
    vtc-lab report sweep=<parent run id> tracking=server tracking.uri=http://mlflow:5000

The work is `vtc_lab.tracking.report_app.make_report`.
"""

from __future__ import annotations

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig

from vtc_lab.cli._hydra import CONF_DIR
from vtc_lab.configcheck import validate
from vtc_lab.tracking.report_app import ReportConfig, make_report

ConfigStore.instance().store(name="report_schema", node=ReportConfig)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="report")
def main(raw: DictConfig) -> float | None:
    cfg: ReportConfig = validate(raw)  # + unknown keys, non-finite numbers
    return make_report(cfg)["report/runs"]


if __name__ == "__main__":
    main()
