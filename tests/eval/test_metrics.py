"""Metrics: accuracy vs mean@k vs pass@k, strict vs lenient, and the failure counts."""

import pytest

from vtc_lab.eval import METRICS, BenchmarkConfig, Problem, grade_predictions, load_benchmark, summarize
from vtc_lab.eval.metrics import GradeRecord


def rec(pid, sample, correct, strict=None, extracted="x", status="ok"):
    strict = correct if strict is None else strict
    return GradeRecord(pid, sample, "g", extracted, correct, status, extracted, strict, status)


def test_mean_at_k_differs_from_sample_accuracy_with_unequal_samples():
    records = [rec("a", 0, True), rec("b", 0, False), rec("b", 1, False), rec("b", 2, True)]
    m = summarize(records)
    assert m["accuracy"] == pytest.approx(2 / 4)
    assert m["mean_at_k"] == pytest.approx((1 + 1 / 3) / 2)
    assert m["pass_at_k"] == 1.0
    assert (m["num_problems"], m["num_samples"]) == (2, 4)


def test_strict_lenient_and_failure_counts():
    records = [rec("a", 0, True, strict=False), rec("b", 0, False, extracted=None),
               rec("c", 0, False, status="timeout"), rec("d", 0, False, status="error")]
    m = summarize(records)
    assert (m["accuracy_lenient"], m["accuracy"]) == (0.25, 0.0)  # the headline is strict
    assert (m["no_answer_lenient"], m["timeouts"], m["errors"]) == (1, 1, 1)
    assert summarize([])["num_samples"] == 0 and summarize([])["accuracy"] == 0.0


def test_every_reported_metric_is_declared():
    m = summarize([rec("a", 0, True)])
    assert set(m) == set(METRICS)
    assert not METRICS["no_answer"].higher_is_better and METRICS["accuracy"].higher_is_better
    assert METRICS["mean_at_k"].aggregation == "mean_of_means"


def test_grade_predictions_end_to_end_on_aime_samples():
    problems = load_benchmark(BenchmarkConfig(name="aime25", limit=3, seed=0))
    p0, p1, p2 = problems
    preds = [
        (p0.id, 0, f"<think>..</think><answer>{p0.gold}</answer>"),   # right, both variants
        (p0.id, 1, f"<answer>{p0.gold}</answer>"),                     # right only leniently
        (p1.id, 0, "<think>never finished"),                            # no answer
        (p1.id, 1, f"so \\boxed{{{int(p1.gold) + 1}}}"),                # wrong
        (p2.id, 0, "\\boxed{9^{9^{9^{9^{9}}}}}"),                       # pathological
    ]
    records = grade_predictions(problems, preds, timeout_s=1.0, workers=2)
    assert [(r.correct, r.correct_strict) for r in records] == [
        (True, True), (True, False), (False, False), (False, False), (False, False)]
    assert records[2].extracted is None and records[4].status == "timeout"
    m = summarize(records)
    assert m["mean_at_k_lenient"] == pytest.approx((1.0 + 0.0 + 0.0) / 3)
    assert m["mean_at_k"] == pytest.approx(0.5 / 3)
    assert (m["no_answer_lenient"], m["no_answer"], m["timeouts"]) == (1, 2, 1)
    with pytest.raises(ValueError, match="unknown problem id 'nope'"):
        grade_predictions(problems, [("nope", 0, "1")])


def test_problem_is_hashable_and_round_trips_as_row():
    p = Problem(id="1", question="q", gold="2", benchmark="math500", meta={"line": 1})
    assert hash(p) == hash(Problem(id="1", question="q", gold="2", benchmark="math500"))
    assert rec("a", 0, True).to_row()["problem_id"] == "a"


def test_headline_accuracy_credits_only_explicit_final_answer_markers():
    """Noise that ends in the gold number (what a random-init model emits) scores lenient
    credit only; the headline `accuracy` needs <answer> after </think>, or \\boxed{}."""
    problems = load_benchmark(BenchmarkConfig(name="math500", limit=2, seed=0))
    p = next(q for q in problems if q.gold.isdigit())
    preds = [(p.id, 0, f"the the 12 ( {p.gold}"), (p.id, 1, f"x</think>\n<answer>{p.gold}</answer>")]
    records = grade_predictions(problems, preds, workers=1)
    m = summarize(records[:1])
    assert (m["accuracy"], m["accuracy_lenient"]) == (0.0, 1.0)
    assert summarize(records[1:])["accuracy"] == 1.0


def test_accuracy_stderr_is_over_problems_beside_the_accuracy():
    # one sample each: lm-eval's acc_stderr, sd(1,0,1,1) / sqrt(4) = .5 / 2
    m = summarize([rec(p, 0, ok) for p, ok in zip("abcd", (True, False, True, True))])
    assert (m["accuracy"], m["accuracy_stderr"]) == (0.75, pytest.approx(0.25, abs=1e-15))
    # two samples each: the units are problems (means 1, .5, 0), sd .5, se .5 / sqrt(3)
    m = summarize([rec("a", 0, True), rec("a", 1, True), rec("b", 0, True), rec("b", 1, False),
                   rec("c", 0, False), rec("c", 1, False)])
    assert m["accuracy_stderr"] == pytest.approx(0.5 / 3 ** 0.5, rel=1e-12)
    assert summarize([rec("a", 0, True)])["accuracy_stderr"] == 0.0   # one problem: no spread
