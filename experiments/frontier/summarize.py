"""Tables of the legibility frontier (experiments/frontier/README.md) from the runs
`run_evals.sh` logged: per point (compression x page condition) the mean over the three
trained models (seeds) with a 95 % t-interval, paired comparisons of each condition against
clean pages on the same models and problems, and accuracy by the round of the first misread;
and the page-conditions illustration. The result figures (`legibility_frontier.png`,
`accuracy_by_first_misread.png`) are drawn by `vtc-lab report` and logged to MLflow.

    python experiments/frontier/summarize.py --tracking-uri sqlite:////work/runs/frontier/mlflow.db \
        --out experiments/frontier

Reading metrics are recomputed from each run's graded predictions with this checkout's
`vtc_lab.infer.metrics.read_metrics` (strict verdicts), so runs logged by an older checkout
report the same definitions.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path

from vtc_lab.eval.benchmarks import BenchmarkConfig, load_benchmark
from vtc_lab.eval.stats import mean_ci, paired_comparison
from vtc_lab.infer.metrics import read_metrics
from vtc_lab.infer.records import ProblemRecord
from vtc_lab.tracking.aggregate import fmt_interval
from vtc_lab.tracking.report import collect_runs

NAME = re.compile(r"^c(?P<ratio>[\d.]+)-s(?P<seed>\d+)-(?P<cond>.+)$")
CONDITIONS = ("none", "mild", "moderate", "severe", "down0.75", "down0.5", "down0.35")


def load(uri: str, experiment: str):
    runs, _, _ = collect_runs(uri, experiment, None, 1000)
    problems = load_benchmark(BenchmarkConfig(name="toy", limit=200))
    points = defaultdict(dict)  # (ratio, cond) -> seed -> dict
    for run in runs:
        m = NAME.match(run.name)
        if not m or run.status != "FINISHED":
            continue
        pred = Path(run.tags["vtc_lab.predictions_dir"]) / "toy__optical.graded.jsonl"
        recs = [ProblemRecord.from_dict(json.loads(line)) for line in pred.read_text().splitlines()]
        reading = read_metrics(recs, problems)
        acc = next(v for k, v in run.metrics.items() if k.endswith("/accuracy") and "/eval" not in k
                   and k.startswith("eval/toy/"))
        outcomes = {r.problem_id: float(bool(r.correct_strict)) for r in recs}
        assert abs(sum(outcomes.values()) / len(outcomes) - acc) < 1e-9, run.name
        points[(m["ratio"], m["cond"])][int(m["seed"])] = {
            "run_id": run.run_id, "accuracy": acc, "outcomes": outcomes, **reading,
            "wall": run.metrics.get(next((k for k in run.metrics if k.endswith("/wall_s")), ""), 0.0)}
    return runs, points


def add_reference(points, spec: str, problems) -> None:
    """`RATIO:SEED:PATH` of an in-training evaluation's predictions table (MLflow artifact
    `eval/predictions/<bench>/<loop>/step_N.json`) as the clean point of that model: same
    protocol and code path as `vtc-lab eval` (tests/train/test_determinism.py)."""
    from vtc_lab.infer.records import RoundRecord

    ratio, seed, path = spec.split(":", 2)
    table = json.loads(Path(path).read_text())
    col = {c: i for i, c in enumerate(table["columns"])}
    recs = []
    for row in table["data"]:
        rounds = [RoundRecord(round=i + 1, text=t, generated_tokens=0, context_text_tokens=0,
                              context_vision_tokens=0, images=0, generate_s=0.0, final=False,
                              stopped=True) for i, t in enumerate(row[col["outputs"]])]
        rec = ProblemRecord(problem_id=row[col["problem_id"]], benchmark="toy", sample=0,
                            mode=row[col["mode"]], seed=0, gold=row[col["gold"]], status=row[col["status"]],
                            output=rounds[-1].text if rounds else "", latency_s=0.0, rounds=rounds)
        rec.correct_strict = bool(row[col["correct_strict"]])
        recs.append(rec)
    outcomes = {r.problem_id: float(r.correct_strict) for r in recs}
    points[(ratio, "none")][int(seed)] = {
        "run_id": Path(path).parts[-7] if len(Path(path).parts) > 7 else path,
        "accuracy": sum(outcomes.values()) / len(outcomes), "outcomes": outcomes,
        **read_metrics(recs, problems)}


def interval(values) -> str:
    return fmt_interval(mean_ci(values)) if values else "-"


def tables(points) -> str:
    lines = ["| compression | pages | problems | seeds | accuracy | read rate | read CER | run ids |",
             "|---|---|---|---|---|---|---|---|"]
    for (ratio, cond) in sorted(points, key=lambda k: (float(k[0]), CONDITIONS.index(k[1])
                                                       if k[1] in CONDITIONS else 99)):
        seeds = points[(ratio, cond)]
        vals = [seeds[s] for s in sorted(seeds)]
        n = "/".join(sorted({str(len(v["outcomes"])) for v in vals}))
        lines.append(f"| {ratio}x | {cond} | {n} | {','.join(map(str, sorted(seeds)))} | "
                     f"{interval([v['accuracy'] for v in vals])} | "
                     f"{interval([v['read_rate'] for v in vals])} | "
                     f"{interval([v['read_cer'] for v in vals])} | "
                     f"{' '.join(v['run_id'][:8] for v in vals)} |")
    return "\n".join(lines)


def paired(points) -> str:
    lines = ["| compression | pages vs clean | seed | accuracy diff [95 % bootstrap] | only clean right | only degraded right | McNemar p |",
             "|---|---|---|---|---|---|---|"]
    for (ratio, cond), seeds in sorted(points.items()):
        if cond == "none" or (ratio, "none") not in points:
            continue
        for seed, v in sorted(seeds.items()):
            clean = points[(ratio, "none")].get(seed)
            if clean is None:
                continue
            ids = sorted(v["outcomes"])  # a 100-problem run pairs with the clean run on its subset
            c = paired_comparison([v["outcomes"][i] for i in ids], [clean["outcomes"][i] for i in ids])
            lines.append(f"| {ratio}x | {cond} | {seed} | {c.diff:+.3f} [{c.low:+.3f}, {c.high:+.3f}] | "
                         f"{c.only_b} | {c.only_a} | {c.p_value:.2g} |")
    return "\n".join(lines)


def misreads(points) -> str:
    """Accuracy by the round of the first misread, pooled over seeds (counts and accuracy)."""
    lines = ["| compression | pages | never misread | first misread round 2 | round 3 | round 4 | round 5 |",
             "|---|---|---|---|---|---|---|"]
    for (ratio, cond), seeds in sorted(points.items()):
        cells = []
        for name in ("none", "round_2", "round_3", "round_4", "round_5"):
            n = sum(v.get(f"first_misread/{name}", 0.0) for v in seeds.values())
            right = sum(v.get(f"first_misread/{name}", 0.0) * v.get(f"acc_by_first_misread/{name}", 0.0)
                        for v in seeds.values())
            cells.append(f"{right / n:.2f} (n={int(n)})" if n else "-")
        lines.append(f"| {ratio}x | {cond} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cer_by_round(points) -> str:
    lines = ["| compression | pages | CER round 2 | round 3 | round 4 |", "|---|---|---|---|---|"]
    for (ratio, cond), seeds in sorted(points.items()):
        cells = [interval([v[f"read_cer/round_{n}"] for v in seeds.values() if f"read_cer/round_{n}" in v])
                 for n in (2, 3, 4)]
        lines.append(f"| {ratio}x | {cond} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def levels_figure(path: Path) -> None:
    """One toy round (the first of a held-out problem) as each model reads it under each page
    condition of the sweep: what the numbers are about."""
    import dataclasses

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import yaml

    from vtc_lab.task import toytask
    from vtc_lab.render import RenderConfig, render_text
    from vtc_lab.render.degrade import DegradeConfig

    conf = Path(__file__).resolve().parents[2] / "conf" / "renderer"
    problem = toytask.heldout_problems(toytask.ToyTaskSpec(), 1)[0]
    text = "\n".join(problem.lines[:4])
    conds = [("none", {}), ("mild", {"level": "mild"}), ("moderate", {"level": "moderate"}),
             ("severe", {"level": "severe"}), ("down0.75", {"downscale": 0.75}),
             ("down0.5", {"downscale": 0.5}), ("down0.35", {"downscale": 0.35})]
    presets = [("1.125x (toy_task_wide)", "toy_task_wide"), ("2.25x (toy_task)", "toy_task")]
    fig, axes = plt.subplots(len(presets), len(conds), figsize=(1.9 * len(conds), 2.6),
                             layout="constrained")
    for i, (label, name) in enumerate(presets):
        base = RenderConfig(**yaml.safe_load((conf / f"{name}.yaml").read_text()))
        for j, (cond, kw) in enumerate(conds):
            page = render_text(text, dataclasses.replace(base, degrade=DegradeConfig(**kw)))[0]
            ax = axes[i][j]
            ax.imshow(page, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(cond, fontsize=9)
            if j == 0:
                ax.set_ylabel(label, fontsize=8)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tracking-uri", required=True)
    ap.add_argument("--experiment", default="toy_frontier")
    ap.add_argument("--out", default="experiments/frontier")
    ap.add_argument("--reference", action="append", default=[], metavar="RATIO:SEED:PATH",
                    help="a clean point from an in-training evaluation's predictions table")
    args = ap.parse_args()
    _, points = load(args.tracking_uri, args.experiment)
    problems = load_benchmark(BenchmarkConfig(name="toy", limit=200))
    for spec in args.reference:
        add_reference(points, spec, problems)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text = "\n\n".join(["## Points (mean over seeds, 95 % t-interval)", tables(points),
                        "## Paired: each condition against clean pages, same model and problems",
                        paired(points), "## Accuracy by the round of the first misread (pooled over seeds)",
                        misreads(points), "## Read CER by round (mean over seeds, 95 % t-interval)",
                        cer_by_round(points)])
    (out / "results.md").write_text(text + "\n")
    print(text)
    levels_figure(out / "page_conditions.png")


if __name__ == "__main__":
    main()
