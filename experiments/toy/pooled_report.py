"""Compare configurations that were trained into different MLflow stores or experiments.

`vtc-lab report` compares the runs of one experiment. An ablation arm is sometimes run
apart (another store, another experiment, a job stopped after an early evaluation point):
this script labels each store's runs as one configuration, pools them, and prints the same
statistics the report prints (mean ± 95 % t-interval over seeds per evaluation point, and the
paired accuracy difference with its bootstrap interval and exact McNemar test, seed s paired
with seed s, problem with problem), restricted to one loop per configuration and to the
evaluation steps asked for.

    python experiments/toy/pooled_report.py --step 450 \
        --arm char_loss=sqlite:////work/runs/toy/mlflow.db:toy:optical:memory=optical \
        --arm no_char_loss=sqlite:////work/runs/charloss/mlflow.db:toy_charloss:optical

An arm is `label=<tracking uri>:<experiment>:<loop>[:<config key of the runs to keep>]`;
the tracking URI may itself contain colons (`sqlite:////path`), so the fields are read from
the right.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from vtc_lab.tracking.aggregate import (CONFIG_TAG, comparisons_markdown, config_keys,
                                        eval_points, paired_tables, points_markdown)
from vtc_lab.tracking.report import collect_outcomes, collect_runs


def parse_arm(text: str) -> tuple[str, str, str, str, str | None]:
    label, _, rest = text.partition("=")
    parts = rest.split(":")
    # uri:experiment:loop[:config]; a config key contains "=", a loop name does not
    if "=" in parts[-1]:
        uri, experiment, loop, keep = ":".join(parts[:-3]), parts[-3], parts[-2], parts[-1]
    else:
        uri, experiment, loop, keep = ":".join(parts[:-2]), parts[-2], parts[-1], None
    if not (label and uri and experiment and loop):
        raise SystemExit(f"--arm {text!r}: expected label=<uri>:<experiment>:<loop>[:<config>]")
    return label, uri, experiment, loop, keep


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arm", action="append", required=True)
    ap.add_argument("--step", type=int, action="append", help="evaluation step(s) to show")
    args = ap.parse_args()

    runs, outcomes, loops = [], {}, {}
    for text in args.arm:
        label, uri, experiment, loop, keep = parse_arm(text)
        loops[label] = loop
        found, _, _ = collect_runs(uri, experiment)
        keys = config_keys(found)
        found = [r for r in found if keep is None or keys[r.run_id] == keep]
        if not found:
            raise SystemExit(f"arm {label}: no runs in {uri} experiment {experiment!r}")
        found = [replace(r, tags={**r.tags, CONFIG_TAG: label}) for r in found]
        for key, table in collect_outcomes(uri, found).items():
            if key[2] == loop:
                outcomes[key] = table
        runs += found
        print(f"{label}: {len(found)} runs ({', '.join(r.run_id[:8] for r in found)}) from "
              f"{uri} experiment {experiment}, loop {loop}")

    steps = set(args.step or [])
    points = [p for p in eval_points(runs)
              if loops.get(p.arm.config) == p.arm.loop and (not steps or p.step in steps)]
    comps = [c for c in paired_tables(runs, outcomes) if not steps or c.step in steps]
    print(points_markdown(points))
    print(comparisons_markdown(comps))


if __name__ == "__main__":
    main()
