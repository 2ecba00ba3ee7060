"""`vtc-lab report`: compare MLflow runs (an experiment, or one sweep) as tables and plots.

    vtc-lab report tracking.experiment=ablation_font_dpi          # every run of an experiment
    vtc-lab report tracking.experiment=toy sweep=latest           # the latest sweep's children
    vtc-lab report experiment=toy                                 # the same: the preset's experiment
    vtc-lab report sweep=<parent run id> tracking=server tracking.uri=http://mlflow:5000

The work is `vtc_lab.tracking.report_app.make_report`.
"""

from __future__ import annotations

import sys

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig

from vtc_lab.cli._hydra import CONF_DIR
from vtc_lab.configcheck import validate
from vtc_lab.tracking.report_app import ReportConfig, make_report

ConfigStore.instance().store(name="report_schema", node=ReportConfig)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="report")
def _app(raw: DictConfig) -> float | None:
    cfg: ReportConfig = validate(raw)  # + unknown keys, non-finite numbers
    return make_report(cfg)["report/runs"]


def experiment_overrides(argv: list[str]) -> list[str]:
    """`vtc-lab report experiment=toy` means "report the runs of `vtc-lab train experiment=toy`":
    a train or eval preset configures the other app (its data, model...), so it is replaced by
    the one thing the report needs from it, `tracking.experiment=<its experiment>`. A preset
    that names no tracking experiment is refused with what to type instead."""
    from pathlib import Path

    from omegaconf import OmegaConf

    out = []
    explicit = any(a.startswith("tracking.experiment=") for a in argv)
    for arg in argv:
        if not arg.startswith("experiment="):
            out.append(arg)
            continue
        name = arg.split("=", 1)[1]
        path = Path(CONF_DIR) / "experiment" / f"{name}.yaml"
        if not path.is_file():
            out.append(arg)  # Hydra names the presets there are
            continue
        experiment = _preset_experiment(path)
        if experiment is None and not explicit:
            print(f"vtc-lab report: error: experiment={name} does not set tracking.experiment, "
                  f"so its runs are in the experiment its command named; type: vtc-lab report "
                  f"tracking.experiment=<that experiment>", file=sys.stderr)
            raise SystemExit(2)
        if not explicit:
            out.append(f"tracking.experiment={experiment}")
    return out


def _preset_experiment(path) -> str | None:
    """`tracking.experiment` of an experiment preset, or of the presets it extends (its
    defaults list; the preset's own value wins, as in Hydra where `_self_` comes last)."""
    from omegaconf import OmegaConf

    preset = OmegaConf.load(path)
    found = OmegaConf.select(preset, "tracking.experiment")
    if found is not None:
        return str(found)
    for entry in reversed(list(preset.get("defaults") or [])):
        if isinstance(entry, str) and entry != "_self_":
            base = path.parent / f"{entry.split('/')[-1]}.yaml"
            if base.is_file() and (found := _preset_experiment(base)) is not None:
                return found
    return None


def main() -> float | None:
    sys.argv[1:] = experiment_overrides(sys.argv[1:])
    return _app()


if __name__ == "__main__":
    main()
