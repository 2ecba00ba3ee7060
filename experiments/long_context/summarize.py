"""Summarise toy_long evaluations (issue 23 §5): per memory, accuracy over the model seeds
(mean ± 95 % t-interval), accuracy by problem length, and the paired optical − text difference
on the same problems (seed s with seed s; bootstrap interval, exact McNemar), all recomputed
from the per-problem predictions with the strict verdict.

    python experiments/long_context/summarize.py --store sqlite:///$PWD/vtc-runs/mlflow.db
    python experiments/long_context/summarize.py --store ... --train-step 900

Without `--train-step`: the `vtc-lab eval experiment=toy_long_eval` runs of one cap policy
(`--policy`; each run's `train_run` param names the model, whose memory and seed come from its
training run in the same store). With it: the training evaluator's own predictions at that
optimizer step (the policy the training preset set, `drop_oldest`)."""
from __future__ import annotations

import argparse
import json
import tempfile
from collections import defaultdict
from pathlib import Path

import mlflow

from vtc_lab.eval.stats import mean_ci, paired_comparison

BUCKETS = ((5, 9), (10, 14), (15, 19), (20, 24), (25, 29))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", required=True)
    ap.add_argument("--policy", default="stop")
    ap.add_argument("--experiment", default="toy_long_eval")
    ap.add_argument("--train-experiment", default="toy_long")
    ap.add_argument("--train-step", type=int, default=None)
    args = ap.parse_args()
    client = mlflow.MlflowClient(args.store)
    trained = {}
    for r in client.search_runs([client.get_experiment_by_name(args.train_experiment).experiment_id]):
        p = r.data.params
        if "optim.memory" in p or "memory" in p:
            trained[r.info.run_id] = (p.get("optim.memory", p.get("memory")),
                                      int(p.get("optim.seed", p.get("seed", 0))))
    outcomes: dict[tuple[str, int], dict[str, tuple[int, int]]] = {}
    if args.train_step is not None:
        runs = [client.get_run(rid) for rid in trained]
        label = f"training evaluator, step {args.train_step}"
    else:
        runs = client.search_runs([client.get_experiment_by_name(args.experiment).experiment_id],
                                  f"params.context_policy = '{args.policy}'")
        label = f"policy {args.policy}"
    for r in runs:
        if args.train_step is not None:
            memory, seed = trained[r.info.run_id]
            path, train_run = f"eval/predictions/toy_long/{memory}", r.info.run_name
            name = f"step_{args.train_step:07d}.json"
        else:
            train_run = r.data.params.get("train_run")
            if not train_run:
                continue
            info = json.loads((Path(train_run) / "run.json").read_text())
            memory, seed = trained[info["mlflow_run_id"]]
            path, name = "predictions", "*.json"
        with tempfile.TemporaryDirectory() as tmp:
            local = client.download_artifacts(r.info.run_id, path, tmp)
            rows = []
            for f in sorted(Path(local).glob(name)):
                table = json.loads(Path(f).read_text())  # MLflow table: columns + data
                rows += [dict(zip(table["columns"], row)) for row in table["data"]]
        # a toy problem id is `<rule>-<first line>`; the first line's countdown letter is the
        # number of steps (A = 0): vtc_lab/task/toytask.py
        outcomes[(memory, seed)] = {
            str(row["problem_id"]): (int(bool(row["correct_strict"])),
                                     ord(str(row["problem_id"]).split("-", 1)[1][0]) - ord("A"))
            for row in rows}
        print(f"run {r.info.run_id[:8]}  {memory:8s} seed {seed}  {train_run}")
    print(f"\n{label}: accuracy over model seeds (mean ± 95 % t-interval)")
    memories = sorted({m for m, _ in outcomes})
    for memory in memories:
        seeds = sorted(s for m, s in outcomes if m == memory)
        accs = [sum(o for o, _ in outcomes[(memory, s)].values()) / len(outcomes[(memory, s)])
                for s in seeds]
        ci = mean_ci(accs)
        line = f"  {memory:8s} all     {ci.mean:.3f} ± {(ci.high - ci.mean):.3f}  seeds {[round(a, 3) for a in accs]}"
        print(line)
        for lo, hi in BUCKETS:
            per = []
            for s in seeds:
                sel = [o for o, st in outcomes[(memory, s)].values() if lo <= st <= hi]
                if sel:
                    per.append(sum(sel) / len(sel))
            if len(per) >= 2:
                ci = mean_ci(per)
                print(f"  {memory:8s} {lo:02d}-{hi:02d}   {ci.mean:.3f} ± {(ci.high - ci.mean):.3f}  seeds {[round(a, 3) for a in per]}")
    if set(memories) >= {"optical", "text"}:
        print("\npaired optical − text on the same problems, seed s with seed s, pooled:")
        for name, keep in [("all", lambda st: True)] + [
                (f"{lo:02d}-{hi:02d}", (lambda lo, hi: lambda st: lo <= st <= hi)(lo, hi))
                for lo, hi in BUCKETS]:
            a, b = [], []
            for (m, s), rows in outcomes.items():
                if m != "optical" or ("text", s) not in outcomes:
                    continue
                other = outcomes[("text", s)]
                for pid, (o, st) in rows.items():
                    if pid in other and keep(st):
                        a.append(o)
                        b.append(other[pid][0])
            if a:
                d = paired_comparison(a, b)
                print(f"  {name:6s} {d.diff:+.3f} [{d.low:+.3f}, {d.high:+.3f}]  McNemar p={d.p_value:.3g}"
                      f"  only optical {d.only_a} / only text {d.only_b}  pairs {d.n}")


if __name__ == "__main__":
    main()
