"""Benchmarks, answer extraction, grading and evaluation metrics (see docs/evaluation.md).

Public API (lazy: importing `vtc_lab.eval` loads neither sympy nor math-verify):
`Problem`, `BenchmarkConfig`, `BENCHMARKS`, `load_benchmark`, `extract_answer`, `is_correct`,
`grade_many`, `GradeResult`, `grade_predictions`, `summarize`, `METRICS`.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "Problem": "benchmarks",
    "ProblemList": "benchmarks",
    "BenchmarkConfig": "benchmarks",
    "BenchmarkSpec": "benchmarks",
    "BENCHMARKS": "benchmarks",
    "register_benchmark": "benchmarks",
    "load_benchmark": "benchmarks",
    "extract_answer": "extract",
    "grader_kind": "extract",
    "is_correct": "grade",
    "answers_match": "grade",
    "grade_many": "grade",
    "GradeResult": "grade",
    "grade_predictions": "metrics",
    "GradeRecord": "metrics",
    "summarize": "metrics",
    "MetricSpec": "metrics",
    "METRICS": "metrics",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(import_module(f"vtc_lab.eval.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'vtc_lab.eval' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
