"""Does training on degraded pages move the break point? (experiments/frontier/README.md)

Pairs, model seed by model seed and problem by problem, the 2.25x models trained on `moderate`
pages (runs `aug-c2.25-s<seed>-<pages>`, logged by the augmentation evaluations) with the
clean-trained models of the frontier (runs `c2.25-s<seed>-<pages>`) reading the same pages:
accuracy per arm as mean ± 95 % t-interval over the three seeds, and the pooled paired
difference (bootstrap interval, exact McNemar test). Outcomes are the strict verdicts of each
run's graded predictions.

    python experiments/frontier/augmentation.py --tracking-uri sqlite:////work/runs/frontier/mlflow.db
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path

from vtc_lab.eval.stats import mean_ci, paired_comparison
from vtc_lab.tracking.aggregate import fmt_interval
from vtc_lab.tracking.report import collect_runs

NAME = re.compile(r"^(?P<arm>aug-)?c2\.25-s(?P<seed>\d+)-(?P<pages>none|moderate|severe)$")


def outcomes_by_run(uri: str, experiment: str) -> dict[tuple[str, str, int], dict[str, float]]:
    """(arm, pages, seed) -> problem id -> 1.0/0.0 (strict), for the finished runs named above."""
    runs, _, _ = collect_runs(uri, experiment, None, 1000, with_curves=False)
    out: dict[tuple[str, str, int], dict[str, float]] = {}
    for run in runs:
        m = NAME.match(run.name)
        if not m or run.status != "FINISHED":
            continue
        pred = Path(run.tags["vtc_lab.predictions_dir"]) / "toy__optical.graded.jsonl"
        rows = [json.loads(line) for line in pred.read_text().splitlines()]
        arm = "augmented" if m["arm"] else "clean-trained"
        out[(arm, m["pages"], int(m["seed"]))] = {r["problem_id"]: float(bool(r["correct_strict"]))
                                                  for r in rows}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tracking-uri", required=True)
    ap.add_argument("--experiment", default="toy_frontier")
    args = ap.parse_args()
    res = outcomes_by_run(args.tracking_uri, args.experiment)
    print("| pages | trained on | accuracy (mean ± 95 % CI over seeds) | seeds' values |")
    print("|---|---|---|---|")
    for pages in ("none", "moderate", "severe"):
        for arm in ("clean-trained", "augmented"):
            seeds = sorted(s for a, p, s in res if a == arm and p == pages)
            if not seeds:
                continue
            # on the augmented runs' problems (100), so both arms are scored on the same ones
            ids = {s: sorted(res.get(("augmented", pages, s), res[(arm, pages, s)])) for s in seeds}
            accs = [sum(res[(arm, pages, s)][i] for i in ids[s]) / len(ids[s]) for s in seeds]
            print(f"| {pages} | {arm} | {fmt_interval(mean_ci(accs))} | "
                  f"{', '.join(f'{a:.2f}' for a in accs)} |")
    print("\n| pages | augmented − clean-trained (pooled pairs, 95 % bootstrap) | McNemar p | "
          "only augmented / only clean-trained right | pairs |")
    print("|---|---|---|---|---|")
    for pages in ("none", "moderate", "severe"):
        a, b = [], []
        for (arm, p, s), aug in res.items():
            if arm != "augmented" or p != pages or ("clean-trained", pages, s) not in res:
                continue
            other = res[("clean-trained", pages, s)]
            for pid in sorted(aug):
                if pid in other:
                    a.append(aug[pid])
                    b.append(other[pid])
        if a:
            d = paired_comparison(a, b)
            print(f"| {pages} | {d.diff:+.3f} [{d.low:+.3f}, {d.high:+.3f}] | {d.p_value:.2g} | "
                  f"{d.only_a} / {d.only_b} | {d.n} |")


if __name__ == "__main__":
    main()
