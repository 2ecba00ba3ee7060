"""Seeds as replicates: group runs by configuration, aggregate each evaluation point over seeds
(mean and 95 % t-interval) and compare configurations on the same problems (paired bootstrap
difference and exact McNemar test).

Pure (no mlflow): works on `RunRecord`s and per-problem outcomes that `report.py` reads from
the store. The statistics themselves are scipy's, through `vtc_lab.eval.stats`.

What is compared is an *arm*: (configuration, loop) on one benchmark, e.g. `memory=optical`
evaluated with its own memory loop. A configuration is the run's `vtc.config_key` tag (the
swept values except the seed); runs logged before that tag existed get one derived from their
params minus the seed. Evaluation points are the optimizer steps the metrics were logged at.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections import defaultdict
from dataclasses import dataclass
from itertools import combinations
from typing import Optional

from vtc_lab.eval.stats import Interval, PairedDiff, mean_ci, paired_comparison
from vtc_lab.tracking.report import NOISE_PARAMS, RunRecord, norm_param

CONFIG_TAG = "vtc.config_key"
SEED_TAG = "vtc.seed"
SEED_PARAMS = ("seed", "*.seed")
AGG_METRICS = ("accuracy", "read_rate", "compression_ratio", "context_tokens_mean")
"""The headline evaluation metrics aggregated over seeds (accuracy first: the paired tests
are about it)."""
_EVAL = re.compile(r"^eval/([^/]+)/([^/]+)/([^/]+)$")

Outcomes = dict[tuple[str, int], float]
"""(problem id, sample index) -> 1.0 correct / 0.0 not, of one run, loop and evaluation step."""


def _is_seed(key: str) -> bool:
    return any(fnmatch.fnmatch(key, p) for p in SEED_PARAMS)


def _varying(runs: list[RunRecord]) -> list[str]:
    """Params that differ between the runs (noise and seed params left out)."""
    keys = sorted({k for r in runs for k in r.params})
    return [k for k in keys if not _is_seed(k) and not any(fnmatch.fnmatch(k, p) for p in NOISE_PARAMS)
            and len({norm_param(r.params.get(k)) for r in runs}) > 1]


def config_keys(runs: list[RunRecord]) -> dict[str, str]:
    """run_id -> configuration key: the `vtc.config_key` tag, or for runs without it the
    params that vary between the runs, seed and noise left out, `key=value` sorted and joined
    by `,` (`default` when nothing but the seed varies). Of the varying params, the designed
    key params (`memory`, `font_size`, ...) that mirror a varying dotted param (the override
    that was swept, `optim.memory`) are taken; failing that every varying key param, then the
    short params, then all: so a side effect of the swept value (the `loops` an `optim.memory`
    implies) does not end up in legends."""
    from vtc_lab.tracking.provenance import KEY_PARAMS

    untagged = [r for r in runs if CONFIG_TAG not in r.tags]
    varying = _varying(untagged) if len(untagged) > 1 else []
    key = [k for k in varying if k in KEY_PARAMS]
    dotted = [k for k in varying if "." in k]
    mirrored = [k for k in key if any(all(norm_param(r.params.get(k)) == norm_param(r.params.get(d))
                                          for r in untagged) for d in dotted)]
    keys = mirrored or key or [k for k in varying if "." not in k] or varying
    out = {}
    for r in runs:
        if CONFIG_TAG in r.tags:
            out[r.run_id] = r.tags[CONFIG_TAG] or "default"
        else:
            out[r.run_id] = ",".join(f"{k}={r.params.get(k, '-')}" for k in sorted(keys)) or "default"
    return out


def seed_of(run: RunRecord) -> str:
    """The replicate index: tag `vtc.seed`, else the `seed` param, else the run id (a run that
    records no seed is its own replicate)."""
    if SEED_TAG in run.tags:
        return run.tags[SEED_TAG]
    for key in ("seed", "optim.seed"):
        if key in run.params:
            return run.params[key]
    return run.run_id


def loop_order(loop: str) -> tuple[bool, str]:
    """Memory loops first, `none` (no memory: the baseline) last, in tables and legends."""
    return (loop == "none", loop)


def _seed_order(seed: str) -> tuple[int, float, str]:
    try:
        return (0, float(seed), seed)
    except ValueError:
        return (1, 0.0, seed)


@dataclass(frozen=True)
class Arm:
    """What is compared: one configuration's loop on one benchmark."""

    config: str
    bench: str
    loop: str

    @property
    def label(self) -> str:
        return f"{self.config} · {self.loop}"


@dataclass(frozen=True)
class Point:
    """One metric of one arm at one evaluation step, over the seeds that reached it."""

    arm: Arm
    metric: str
    step: int
    samples_seen: Optional[float]
    interval: Interval
    seeds: tuple[str, ...]


def _history(run: RunRecord, key: str) -> list[tuple[int, float]]:
    if key in run.curves:
        return run.curves[key]
    return [(0, run.metrics[key])] if key in run.metrics else []


def eval_points(runs: list[RunRecord], metrics: tuple[str, ...] = AGG_METRICS) -> list[Point]:
    """Every (arm, metric, step) with its mean and 95 % t-interval over seeds; a seed's value
    at a step is what its run logged there (one value per run: a repeated seed counts once,
    the latest run's value). Sorted by benchmark, metric, arm, step."""
    cfg = config_keys(runs)
    values: dict[tuple[Arm, str, int], dict[str, float]] = defaultdict(dict)
    seen: dict[tuple[str, int], list[float]] = defaultdict(list)
    for r in sorted(runs, key=lambda r: r.start_time):
        samples = dict(r.curves.get("train/samples_seen", []))
        for key in r.metrics:
            m = _EVAL.match(key)
            if not m or m.group(3) not in metrics:
                continue
            arm = Arm(cfg[r.run_id], m.group(1), m.group(2))
            for step, value in _history(r, key):
                if math.isnan(value):
                    continue
                values[(arm, m.group(3), step)][seed_of(r)] = value
                if step in samples:
                    seen[(arm.config, step)].append(samples[step])
    out = []
    for (arm, metric, step), by_seed in values.items():
        if metric == "compression_ratio" and not any(by_seed.values()):
            continue  # a loop without rendered memory logs ratio 0: nothing to aggregate
        seeds = tuple(sorted(by_seed, key=_seed_order))
        xs = seen.get((arm.config, step))
        out.append(Point(arm, metric, step, sum(xs) / len(xs) if xs else None,
                         mean_ci([by_seed[s] for s in seeds]), seeds))
    order = {m: i for i, m in enumerate(metrics)}
    return sorted(out, key=lambda p: (p.arm.bench, order[p.metric], p.arm.config,
                                      loop_order(p.arm.loop), p.step))


_LENGTH = re.compile(r"^accuracy_len_(\d+)-(\d+)$")


def length_curves(runs: list[RunRecord]) -> dict[Arm, list[tuple[int, int, Interval]]]:
    """Accuracy against problem length per arm (`accuracy_len_<first>-<last>`, logged by
    `vtc_lab.infer.metrics.length_metrics`): (first, last step of the bucket, mean and 95 %
    interval over seeds) at each arm's last evaluation step, buckets in length order."""
    names = tuple(sorted({m.group(3) for r in runs for k in r.metrics
                          for m in [_EVAL.match(k)] if m and _LENGTH.match(m.group(3))}))
    if not names:
        return {}
    points = eval_points(runs, names)
    last = {}
    for p in points:
        last[p.arm] = max(last.get(p.arm, p.step), p.step)
    out: dict[Arm, list[tuple[int, int, Interval]]] = defaultdict(list)
    for p in points:
        if p.step == last[p.arm]:
            lo, hi = (int(x) for x in _LENGTH.match(p.metric).groups())
            out[p.arm].append((lo, hi, p.interval))
    return {arm: sorted(v, key=lambda t: t[0]) for arm, v in out.items()}


@dataclass(frozen=True)
class Comparison:
    """A - B at one evaluation step, outcomes pooled over the seeds both arms have."""

    a: Arm
    b: Arm
    step: int
    result: PairedDiff
    seeds: tuple[str, ...]
    unpaired: int
    """Outcomes of A or B left out: no partner (same seed, problem and sample) in the other."""


def paired_tables(runs: list[RunRecord],
                  outcomes: dict[tuple[str, str, str, int], Outcomes]) -> list[Comparison]:
    """Every pair of arms on the same benchmark and step that both have per-problem outcomes
    (`outcomes[(run_id, bench, loop, step)]`). Pooling rule: seed i of A is paired with seed
    i of B only when they are the same seed value; within it, (problem id, sample) pairs with
    (problem id, sample). Seeds or problems present on one side only are left out (counted in
    `unpaired`). Sorted by benchmark, step, arm pair."""
    cfg = config_keys(runs)
    by_id = {r.run_id: r for r in runs}
    arms: dict[tuple[str, int], dict[Arm, dict[str, Outcomes]]] = defaultdict(lambda: defaultdict(dict))
    for (run_id, bench, loop, step), rows in sorted(
            outcomes.items(), key=lambda kv: by_id[kv[0][0]].start_time if kv[0][0] in by_id else 0):
        if run_id in by_id:
            run = by_id[run_id]
            arms[(bench, step)][Arm(cfg[run_id], bench, loop)][seed_of(run)] = rows
    out = []
    for (bench, step), at in sorted(arms.items()):
        for a, b in combinations(sorted(at, key=lambda x: (x.config, loop_order(x.loop))), 2):
            seeds = tuple(sorted(set(at[a]) & set(at[b]), key=_seed_order))
            xa: list[float] = []
            xb: list[float] = []
            unpaired = sum(len(at[a][s]) for s in set(at[a]) - set(seeds)) + sum(
                len(at[b][s]) for s in set(at[b]) - set(seeds))
            for s in seeds:
                ra, rb = at[a][s], at[b][s]
                common = sorted(set(ra) & set(rb))
                unpaired += len(ra) + len(rb) - 2 * len(common)
                xa += [ra[k] for k in common]
                xb += [rb[k] for k in common]
            if xa:
                out.append(Comparison(a, b, step, paired_comparison(xa, xb), seeds, unpaired))
    return out


def metric_name(config: str) -> str:
    """A configuration key as an MLflow metric path segment (`=` -> `:`, `,` -> space, any other
    character MLflow refuses in a metric name -> `_`)."""
    return re.sub(r"[^\w.\- :]", "_", config.replace("=", ":").replace(",", " "))


def parent_metrics(points: list[Point]) -> dict[int, dict[str, float]]:
    """step -> the aggregates a sweep's parent run logs there, so the MLflow runs table sorts
    and filters by them: `stats/<config>/<bench>/<loop>/<metric>_{mean,ci_low,ci_high,n}`
    (no `_ci_*` for a single seed)."""
    out: dict[int, dict[str, float]] = defaultdict(dict)
    for p in points:
        base = f"stats/{metric_name(p.arm.config)}/{p.arm.bench}/{p.arm.loop}/{p.metric}"
        out[p.step][f"{base}_mean"] = p.interval.mean
        out[p.step][f"{base}_n"] = float(p.interval.n)
        if p.interval.has_interval:
            out[p.step][f"{base}_ci_low"] = p.interval.low
            out[p.step][f"{base}_ci_high"] = p.interval.high
    return dict(out)


# ------------------------------------------------------------------------------ text

def fmt_interval(iv: Interval, digits: int = 3) -> str:
    """`0.412 ± 0.031 [0.381, 0.443]`, or `0.412 (one seed: no CI)`."""
    if not iv.has_interval:
        return f"{iv.mean:.{digits}f} (one seed: no CI)"
    return f"{iv.mean:.{digits}f} ± {iv.half_width():.{digits}f} [{iv.low:.{digits}f}, {iv.high:.{digits}f}]"


def _at(p: Point) -> str:
    return f"step {p.step}" + (f" ({p.samples_seen:.0f} samples)" if p.samples_seen is not None else "")


def points_markdown(points: list[Point]) -> str:
    if not points:
        return "_no evaluation metrics to aggregate_\n"
    lines = ["| benchmark | metric | configuration | loop | eval point | mean ± 95 % CI [low, high] | n seeds |",
             "|---|---|---|---|---|---|---|"]
    for p in points:
        lines.append(f"| {p.arm.bench} | {p.metric} | {p.arm.config} | {p.arm.loop} | {_at(p)} | "
                     f"{fmt_interval(p.interval, 4)} | {p.interval.n} |")
    return "\n".join(lines) + "\n"


def _diff_cells(c: Comparison) -> list[str]:
    r = c.result
    return [f"{r.diff:+.4f}", f"[{r.low:+.4f}, {r.high:+.4f}]", f"{r.p_value:.4g}",
            f"{r.only_a}/{r.only_b}", f"{r.n} = {len(c.seeds)} seeds", str(c.unpaired)]


def comparisons_markdown(comps: list[Comparison]) -> str:
    if not comps:
        return "_no pair of configurations has per-problem outcomes on the same problems_\n"
    lines = ["| benchmark | eval point | A | B | accuracy A − B | 95 % bootstrap CI | McNemar p (exact) "
             "| right only A / only B | pairs | left out (no partner) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for c in comps:
        lines.append(f"| {c.a.bench} | step {c.step} | {c.a.label} | {c.b.label} | "
                     + " | ".join(_diff_cells(c)) + " |")
    return "\n".join(lines) + "\n"


CONSOLE_METRICS = ("accuracy", "read_rate")


def console_summary(points: list[Point], comps: list[Comparison]) -> str:
    """What `vtc-lab report` prints: per benchmark and evaluation point, each arm's accuracy
    and read rate as mean ± 95 % CI with n seeds (report.md has every headline metric), then
    the paired differences."""
    points = [p for p in points if p.metric in CONSOLE_METRICS]
    lines = ["mean ± 95 % CI half-width [low, high] over seeds (Student t), n = seeds "
             "(report.md: every headline metric):"]
    last = None
    width = max([20] + [len(p.arm.label) for p in points])
    for p in points:
        head = (p.arm.bench, p.metric)
        if head != last:
            lines.append(f"  {p.arm.bench} {p.metric}:")
            last = head
        lines.append(f"    {p.arm.label:<{width}}  {_at(p):<24} {fmt_interval(p.interval)}  n={p.interval.n}")
    if comps:
        lines.append("paired accuracy difference A − B (same seed, same problem; 95 % bootstrap "
                     "CI; exact McNemar p; right only A/only B):")
        for c in comps:
            r = c.result
            lines.append(f"  {c.a.bench} step {c.step}: {c.a.label} − {c.b.label}: {r.diff:+.3f} "
                         f"[{r.low:+.3f}, {r.high:+.3f}] p={r.p_value:.3g} ({r.only_a}/{r.only_b}; "
                         f"{r.n} pairs over {len(c.seeds)} seed{'s' if len(c.seeds) != 1 else ''})")
    return "\n".join(lines)
