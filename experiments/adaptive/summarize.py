"""The evaluation-only conditions of experiments/adaptive (issue 23 §4): every trained model on
pages other than its training pages, one row per (renderer the model was trained with, pages),
mean ± 95 % t-interval over the models (seeds), with each seed's accuracy and the run ids.

The model is recognised by its run's `train.renderer` param (the training renderer's
`config_hash`, severe pages included), so nothing on disk is needed; the pages by the eval
run's `eval_degrade` / `eval_degrade.downscale` params.

    python experiments/adaptive/summarize.py --tracking-uri sqlite:////work/runs/adaptive/mlflow.db
"""

from __future__ import annotations

import argparse
import math
from collections import defaultdict
from pathlib import Path

import yaml

from vtc_lab.eval.stats import mean_ci
from vtc_lab.render import RenderConfig, config_hash
from vtc_lab.tracking.report import collect_runs

CONF = Path(__file__).resolve().parents[2] / "conf" / "renderer"
PRESETS = ("toy_task", "toy_task_f18", "toy_task_adaptive")
KEY = "eval/toy/memory/"


def preset_of_hash(level: str = "severe") -> dict[str, str]:
    """config_hash of each preset's renderer at the training degradation -> preset name."""
    out = {}
    for name in PRESETS:
        fields = yaml.safe_load((CONF / f"{name}.yaml").read_text())
        out[config_hash(RenderConfig(**fields, degrade={"level": level}))] = name
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tracking-uri", required=True)
    ap.add_argument("--experiment", default="toy_adaptive_eval")
    args = ap.parse_args()
    names = preset_of_hash()
    runs, _, _ = collect_runs(args.tracking_uri, args.experiment, with_curves=False)
    rows: dict[tuple[str, str], list] = defaultdict(list)
    for run in runs:
        if run.status != "FINISHED" or KEY + "accuracy" not in run.metrics:
            continue
        model = names.get(run.params.get("train.renderer", ""), run.params.get("train.renderer", "?"))
        pages = run.params.get("eval_degrade", "as trained")
        if run.params.get("eval_degrade.downscale") not in (None, "1.0", "None"):
            pages += f" + downscale {run.params['eval_degrade.downscale']}"
        rows[(model, pages)].append(run)
    print("| trained renderer | pages | accuracy, mean [95 % CI] | seeds' accuracies | "
          "compression | read rate | run ids (seed order) |")
    print("|---|---|---|---|---|---|---|")
    for (model, pages), group in sorted(rows.items()):
        group.sort(key=lambda r: r.params.get("train.seed", ""))
        accs = [r.metrics[KEY + "accuracy"] for r in group]
        ci = mean_ci(accs)
        interval = f"{ci.mean:.3f} [{ci.low:.3f}, {ci.high:.3f}]" if not math.isnan(ci.low) else f"{ci.mean:.3f} (n=1)"
        comp = sum(r.metrics.get(KEY + "compression_ratio", float("nan")) for r in group) / len(group)
        read = sum(r.metrics.get(KEY + "read_rate", float("nan")) for r in group) / len(group)
        print(f"| {model} | {pages} | {interval} | {', '.join(f'{a:.3f}' for a in accs)} | "
              f"{comp:.2f}x | {read:.3f} | {' '.join(r.run_id[:8] for r in group)} |")


if __name__ == "__main__":
    main()
