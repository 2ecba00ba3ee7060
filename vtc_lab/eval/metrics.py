"""Accuracy metrics over graded samples, each declaring its direction and aggregation.

`grade_predictions` grades every (problem, sample) output with both extraction variants (one
worker pool, identical pairs compared once); `summarize` turns the records into the numbers a
run logs (`eval/<benchmark>/<loop>/<metric>`). The reference protocol samples AIME25/AMC23 16
times per problem and reports mean accuracy (`mean_at_k`); `pass_at_k` is reported alongside.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

from vtc_lab.eval.benchmarks import Problem
from vtc_lab.eval.extract import extract_answer
from vtc_lab.eval.grade import compare_many, answers_match


@dataclass(frozen=True)
class MetricSpec:
    """How a metric reads: which direction is better and how per-sample values combine."""

    name: str
    higher_is_better: bool
    aggregation: str
    """mean (over samples) | mean_of_means (over problems of their per-sample mean) |
    any_mean (over problems of any-sample-correct) | sum | count."""
    description: str


METRICS: dict[str, MetricSpec] = {m.name: m for m in (
    MetricSpec("accuracy", True, "mean",
               "the headline: fraction of samples correct, credited only from an explicit "
               "final-answer marker (strict extraction)"),
    MetricSpec("accuracy_stderr", False, "stderr_over_problems",
               "standard error of `accuracy` over problems (lm-eval-harness's acc_stderr: sample "
               "std of the per-problem accuracies / sqrt(problems)); 0 for fewer than 2 problems"),
    MetricSpec("accuracy_lenient", True, "mean",
               "fraction of samples correct with lenient extraction (also unmarked last numbers); "
               "never the headline"),
    MetricSpec("mean_at_k", True, "mean_of_means",
               "mean over problems of the fraction of its k samples correct (strict)"),
    MetricSpec("mean_at_k_lenient", True, "mean_of_means", "mean_at_k with lenient extraction"),
    MetricSpec("pass_at_k", True, "any_mean",
               "fraction of problems with at least one correct sample (strict)"),
    MetricSpec("no_answer", False, "sum", "samples without an explicit final-answer marker (strict)"),
    MetricSpec("no_answer_lenient", False, "sum", "samples where lenient extraction found no answer"),
    MetricSpec("no_answer_rate", False, "mean", "no_answer / num_samples"),
    MetricSpec("timeouts", False, "sum", "samples whose equivalence check ran past the deadline"),
    MetricSpec("errors", False, "sum", "samples whose grader raised or crashed"),
    MetricSpec("num_problems", True, "count", "problems graded"),
    MetricSpec("num_samples", True, "count", "samples graded"),
)}


@dataclass(frozen=True)
class GradeRecord:
    """One graded sample: both extraction variants side by side (a predictions-table row)."""

    problem_id: str
    sample: int
    gold: str
    extracted: str | None
    correct: bool
    status: str
    extracted_strict: str | None
    correct_strict: bool
    status_strict: str
    error: str | None = None

    def to_row(self) -> dict:
        return asdict(self)


def grade_predictions(
    problems: Sequence[Problem],
    predictions: Iterable[tuple[str, int, str | None]],
    timeout_s: float = 5.0,
    workers: int = 2,
    memory_mb: int | None = 4096,
    progress: bool = False,
) -> list[GradeRecord]:
    """Grade (problem_id, sample_index, output_text) triples against their problems' gold answers.

    Unknown problem ids raise ValueError (a mismatch between predictions and benchmark is a bug,
    not a zero). Math comparisons run in worker processes with a hard per-item deadline.
    """
    by_id = {p.id: p for p in problems}
    rows = []
    for pid, sample, text in predictions:
        if pid not in by_id:
            raise ValueError(f"prediction for unknown problem id {pid!r}")
        p = by_id[pid]
        rows.append((p, int(sample), extract_answer(text, p.grader, strict=False),
                     extract_answer(text, p.grader, strict=True)))
    # Collect the distinct math comparisons of both variants into one pool run.
    math_pairs: dict[tuple[str, str], tuple[str, bool, str | None]] = {}
    for p, _, lenient, strict in rows:
        for pred in (lenient, strict):
            if pred is not None and p.grader == "math":
                math_pairs.setdefault((pred, p.gold), ("ok", False, None))
    keys = list(math_pairs)
    verdicts = compare_many(keys, timeout_s, workers, memory_mb, progress=progress)
    for key, (status, ok, err, _) in zip(keys, verdicts):
        math_pairs[key] = (status, ok and status == "ok", err)

    def verdict(p: Problem, pred: str | None) -> tuple[str, bool, str | None]:
        if pred is None:
            return "ok", False, None
        if p.grader == "math":
            return math_pairs[(pred, p.gold)]
        return "ok", answers_match(pred, p.gold, p.grader), None

    out = []
    for p, sample, lenient, strict in rows:
        s1, ok1, e1 = verdict(p, lenient)
        s2, ok2, e2 = verdict(p, strict)
        out.append(GradeRecord(p.id, sample, p.gold, lenient, ok1, s1, strict, ok2, s2, e1 or e2))
    return out


def summarize(records: Sequence[GradeRecord]) -> dict[str, float]:
    """The METRICS over graded samples (empty input: counts 0, rates NaN-free 0.0).

    `accuracy_stderr` treats problems as the units (a problem's samples are not independent
    draws): the standard error of the per-problem strict accuracies, which with one sample per
    problem is exactly lm-eval-harness's acc_stderr."""
    from vtc_lab.eval.stats import accuracy_stderr

    n = len(records)
    per_problem: dict[str, list[GradeRecord]] = defaultdict(list)
    for r in records:
        per_problem[r.problem_id].append(r)
    n_prob = len(per_problem)

    def mean(xs) -> float:
        xs = list(xs)
        return sum(xs) / len(xs) if xs else 0.0

    per_problem_acc = [mean(r.correct_strict for r in rs) for rs in per_problem.values()]
    return {
        "accuracy": mean(r.correct_strict for r in records),
        "accuracy_stderr": accuracy_stderr(per_problem_acc) if n_prob >= 2 else 0.0,
        "accuracy_lenient": mean(r.correct for r in records),
        "mean_at_k": mean(per_problem_acc),
        "mean_at_k_lenient": mean(mean(r.correct for r in rs) for rs in per_problem.values()),
        "pass_at_k": mean(any(r.correct_strict for r in rs) for rs in per_problem.values()),
        "no_answer": float(sum(r.extracted_strict is None for r in records)),
        "no_answer_lenient": float(sum(r.extracted is None for r in records)),
        "no_answer_rate": mean(r.extracted_strict is None for r in records),
        "timeouts": float(sum(r.status == "timeout" or r.status_strict == "timeout" for r in records)),
        "errors": float(sum(r.status == "error" or r.status_strict == "error" for r in records)),
        "num_problems": float(n_prob),
        "num_samples": float(n),
    }
