"""`vtc-lab report`'s statistics on a real sqlite store: two configurations x 3 seeds with known
per-problem outcomes, logged through vtc_lab.tracking; every printed number is recomputed here
with scipy directly."""

from __future__ import annotations

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from scipy import stats as sps

from vtc_lab.eval.stats import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED
from vtc_lab.tracking import TrackingConfig, open_run, prepare
from vtc_lab.tracking.aggregate import Arm, config_keys, eval_points, paired_tables
from vtc_lab.tracking.report import RunRecord, collect_outcomes
from vtc_lab.tracking.report_app import ReportConfig, make_report
from vtc_lab.tracking.runs import finish_run

PROBLEMS = [f"p{i}" for i in range(12)]
STEPS = (10, 20)
SEEDS = (0, 1, 2)


def outcome(memory: str, loop: str, seed: int, step: int, i: int) -> int:
    """Known per-problem outcomes: optical better than text, both improving with the step."""
    if loop == "none":
        return int(i < 2 + seed)
    if memory == "optical":   # 8, 7, 6 of 12 at step 10; 8, 8, 7 at step 20
        return int((i + step // 10) % 3 != 0 and i >= seed)
    return int((i % 2 == 0 and i <= 10 - 2 * seed) or (step == 20 and i == 11))   # 6, 5, 4 (+1)


def _log(tmp_path):
    cfg = TrackingConfig(experiment="st")
    uri = prepare(cfg, tmp_path)
    parent = open_run(cfg, uri, run_name="sweep", tags={"vtc.sweep": "true"})
    for memory in ("optical", "text"):
        for seed in SEEDS:
            run = open_run(cfg, uri, run_name=f"{memory}-s{seed}", parent_run_id=parent.run_id,
                           tags={"vtc.seed": str(seed), "vtc.config_key": f"memory={memory}"})
            run.log_params({"memory": memory, "seed": seed})
            for step in STEPS:
                run.log_metrics({"train/samples_seen": 8.0 * step}, step=step)
                for loop in ("memory", "none"):
                    xs = [outcome(memory, loop, seed, step, i) for i in range(len(PROBLEMS))]
                    run.log_metrics({f"eval/toy/{loop}/accuracy": sum(xs) / len(xs),
                                     f"eval/toy/{loop}/read_rate": 0.5 + 0.1 * seed}, step=step)
                    run.log_table([{"problem_id": p, "sample": 0, "correct_strict": bool(x),
                                    "correct": bool(x)} for p, x in zip(PROBLEMS, xs)],
                                  f"eval/predictions/toy/{loop}/step_{step:07d}.json")
            finish_run(run)
    finish_run(parent)
    return uri, parent.run_id


def _ci(values):
    mean = float(np.mean(values))
    low, high = sps.t.interval(0.95, len(values) - 1, loc=mean, scale=sps.sem(values))
    return mean, float(low), float(high)


def test_report_prints_mean_ci_paired_table_and_logs_aggregates_to_parent(tmp_path, capsys):
    uri, parent_id = _log(tmp_path)
    out = tmp_path / "rep"
    res = make_report(ReportConfig(tracking=TrackingConfig(experiment="st"),
                                   output_root=str(tmp_path), sweep="latest", output_dir=str(out)))
    printed = capsys.readouterr().out
    md = (out / "report.md").read_text()
    assert res["report/configurations"] == 2.0
    # 4 arms (2 configurations x 2 loops) -> 6 pairs, at each of the 2 steps
    assert res["report/comparisons"] == 12.0
    client = MlflowClient(uri)
    for memory in ("optical", "text"):
        for step in STEPS:
            accs = [np.mean([outcome(memory, "memory", s, step, i) for i in range(12)]) for s in SEEDS]
            mean, low, high = _ci(accs)
            row = (f"memory={memory} · memory step {step} ({8 * step} samples) "
                   f"{mean:.3f} ± {(high - low) / 2:.3f} [{low:.3f}, {high:.3f}] n=3")
            assert row in [" ".join(r.split()) for r in printed.splitlines()], row
            assert f"{mean:.4f} ± {(high - low) / 2:.4f} [{low:.4f}, {high:.4f}] | 3 |" in md
            # the parent run carries the aggregates at the evaluation step
            base = f"stats/memory:{memory}/toy/memory/accuracy"
            got = {suffix: {m.step: m.value for m in client.get_metric_history(parent_id, base + suffix)}
                   for suffix in ("_mean", "_ci_low", "_ci_high", "_n")}
            assert got["_mean"][step] == pytest.approx(mean, rel=1e-12)
            assert got["_ci_low"][step] == pytest.approx(low, rel=1e-12)
            assert got["_ci_high"][step] == pytest.approx(high, rel=1e-12)
            assert got["_n"][step] == 3.0
    # read rate over seeds .5, .6, .7 (same at both steps)
    mean, low, high = _ci([0.5, 0.6, 0.7])
    assert client.get_run(parent_id).data.metrics[
        "stats/memory:optical/toy/memory/read_rate_ci_high"] == pytest.approx(high, rel=1e-12)

    # paired: optical vs text (own memory loop), step 20, pooled seed by seed, problem by problem
    a = [outcome("optical", "memory", s, 20, i) for s in SEEDS for i in range(12)]
    b = [outcome("text", "memory", s, 20, i) for s in SEEDS for i in range(12)]
    only_a = sum(x == 1 and y == 0 for x, y in zip(a, b))
    only_b = sum(x == 0 and y == 1 for x, y in zip(a, b))
    p = sps.binomtest(only_a, only_a + only_b, 0.5).pvalue
    boot = sps.bootstrap((np.array(a, float), np.array(b, float)),
                         lambda x, y, axis: x.mean(axis=axis) - y.mean(axis=axis), paired=True,
                         vectorized=True, n_resamples=BOOTSTRAP_RESAMPLES, method="percentile",
                         rng=np.random.default_rng(BOOTSTRAP_SEED)).confidence_interval
    diff = np.mean(a) - np.mean(b)
    expected = (f"toy step 20: memory=optical · memory − memory=text · memory: {diff:+.3f} "
                f"[{boot.low:+.3f}, {boot.high:+.3f}] p={p:.3g} ({only_a}/{only_b}; 36 pairs over 3 seeds)")
    assert expected in printed
    assert (f"| toy | step 20 | memory=optical · memory | memory=text · memory | {diff:+.4f} | "
            f"[{boot.low:+.4f}, {boot.high:+.4f}] | {p:.4g} | {only_a}/{only_b} | 36 = 3 seeds | 0 |") in md
    # the "none" loop of one configuration against its own memory loop is a pair too
    assert "memory=optical · memory − memory=optical · none" in printed


def test_outcomes_read_from_both_prediction_layouts(tmp_path):
    cfg = TrackingConfig(experiment="o")
    uri = prepare(cfg, tmp_path)
    run = open_run(cfg, uri, run_name="eval")
    run.log_table([{"problem_id": "a", "sample": 1, "correct_strict": True},
                   {"problem_id": "b", "sample": 0, "correct_strict": None}], "predictions/toy__optical.json")
    run.log_table([{"problem_id": "a", "sample": 0, "correct_strict": False}],
                  "eval/predictions/toy/memory/step_0000040.json")
    run.log_metrics({"x": 1.0})
    finish_run(run)
    rec = RunRecord(run.run_id, "eval", "FINISHED")
    got = collect_outcomes(uri, [rec])
    assert got == {(run.run_id, "toy", "optical", 0): {("a", 1): 1.0, ("b", 0): 0.0},
                   (run.run_id, "toy", "memory", 40): {("a", 0): 0.0}}


def _rec(run_id, params, tags=None, metrics=None, start=0):
    return RunRecord(run_id, run_id, "FINISHED", params=params, tags=tags or {},
                     metrics=metrics or {}, start_time=start)


def test_runs_without_tags_are_grouped_by_params_minus_seed():
    runs = [_rec(f"r{m}{s}", {"memory": m, "optim.memory": m, "loops": f"['{m}', 'none']",
                              "seed": str(s), "output_root": f"/o/{m}{s}", "optim.seed": str(s),
                              "backbone": "tiny"})
            for m in ("optical", "text") for s in (0, 1)]
    runs.append(_rec("new", {"memory": "x"}, tags={"vtc.config_key": "memory=optical", "vtc.seed": "7"}))
    keys = config_keys(runs)
    # `loops` varies too, but as a consequence of the swept `optim.memory`: not in the key
    assert keys == {"roptical0": "memory=optical", "roptical1": "memory=optical",
                    "rtext0": "memory=text", "rtext1": "memory=text", "new": "memory=optical"}
    # nothing varies but the seed: one configuration
    same = [_rec(f"s{s}", {"lr": "0.1", "seed": str(s)}) for s in range(3)]
    assert set(config_keys(same).values()) == {"default"}
    # the train/validation split sizes follow the seed (an outcome, not a setting)
    split = [_rec(f"p{s}", {"lr": "0.1", "seed": str(s), "train_samples": str(31400 + s),
                            "val_samples": str(600 - s)}) for s in range(3)]
    assert set(config_keys(split).values()) == {"default"}


def test_unequal_seeds_pair_only_the_shared_ones():
    runs = [_rec(f"a{s}", {}, {"vtc.config_key": "k=a", "vtc.seed": str(s)}) for s in (0, 1, 2)]
    runs += [_rec(f"b{s}", {}, {"vtc.config_key": "k=b", "vtc.seed": str(s)}) for s in (1, 2, 3)]
    outcomes = {(r.run_id, "t", "memory", 5): {("p", 0): 1.0, ("q", 0): float(r.run_id[0] == "a")}
                for r in runs}
    outcomes[("b2", "t", "memory", 5)][("extra", 0)] = 1.0
    (comp,) = paired_tables(runs, outcomes)
    assert (comp.a, comp.b) == (Arm("k=a", "t", "memory"), Arm("k=b", "t", "memory"))
    assert comp.seeds == ("1", "2")                    # seeds 0 and 3 have no partner
    assert comp.result.n == 4 and (comp.result.only_a, comp.result.only_b) == (2, 0)
    assert comp.unpaired == 2 + 2 + 1                  # a0's and b3's two outcomes, b2's extra
    assert comp.result.diff == pytest.approx(0.5)


def test_one_seed_has_no_interval_and_nan_is_skipped():
    runs = [_rec("r", {}, {"vtc.config_key": "k=a", "vtc.seed": "0"},
                 {"eval/t/memory/accuracy": 0.25, "eval/t/memory/read_rate": float("nan")})]
    (point,) = eval_points(runs)
    assert point.metric == "accuracy" and point.interval.n == 1 and not point.interval.has_interval


def test_a_loop_without_pages_has_no_compression_point():
    runs = [_rec(f"r{s}", {}, {"vtc.config_key": "k=a", "vtc.seed": str(s)},
                 {"eval/t/text/compression_ratio": 0.0, "eval/t/optical/compression_ratio": 2.0 + s})
            for s in range(2)]
    (point,) = eval_points(runs)
    assert (point.arm.loop, point.interval.mean, point.interval.n) == ("optical", 2.5, 2)


def test_configuration_as_metric_name_is_one_valid_path_segment():
    import re

    from vtc_lab.tracking.aggregate import metric_name

    # MLflow's documented rule: alphanumerics, underscores, dashes, periods, spaces, colons, slashes
    allowed = re.compile(r"^[\w\-. :/]+$")

    assert metric_name("lr=0.001,memory=optical") == "lr:0.001 memory:optical"
    for key in ("lr=0.001,memory=optical", 'loops=["a", "b"]', "path=a/b,x=1+2"):
        name = metric_name(key)
        assert "/" not in name
        assert allowed.match(f"stats/{name}/toy/memory/accuracy_mean"), name
