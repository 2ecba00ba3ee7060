"""Statistics of evaluation results: standard errors, confidence intervals, paired tests.

Thin wrappers over scipy.stats, so the numbers a report prints are scipy's own (nothing here
re-derives a distribution). Pure: no mlflow, no torch; the evaluation code (a single run's
`accuracy_stderr`) and the report (means over seeds, paired comparisons) both import it, which
is why it lives in the `eval` leaf.

- `accuracy_stderr`: the standard error of a mean accuracy over problems, as lm-eval-harness
  reports `acc_stderr` (sample standard deviation, ddof=1, over sqrt(n)).
- `mean_ci`: mean and two-sided t-interval over replicates (seeds); n=1 has no interval.
- `paired_bootstrap_diff`: accuracy difference A - B of outcomes paired by problem, with a
  percentile bootstrap interval that resamples the pairs (fixed rng seed: reproducible).
- `mcnemar_exact`: exact McNemar test on the discordant pairs (two-sided binomial test).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

BOOTSTRAP_SEED = 0
"""The bootstrap's rng seed: the same outcomes always give the same interval."""
BOOTSTRAP_RESAMPLES = 9999


def _floats(values: Sequence[float], name: str) -> list[float]:
    out = [float(v) for v in values]
    if any(math.isnan(v) for v in out):
        raise ValueError(f"{name}: NaN among the values")
    return out


def accuracy_stderr(outcomes: Sequence[float]) -> float:
    """Standard error of the mean of per-problem outcomes (1/0 correct, or a problem's mean
    over its samples): sample std (ddof=1) / sqrt(n), lm-eval-harness's `mean_stderr`.
    NaN for fewer than two problems (no spread to estimate)."""
    from scipy import stats

    xs = _floats(outcomes, "accuracy_stderr")
    if len(xs) < 2:
        return math.nan
    return float(stats.sem(xs, ddof=1))


@dataclass(frozen=True)
class Interval:
    """A mean over `n` replicates with its two-sided confidence interval (NaN bounds: n=1)."""

    mean: float
    low: float
    high: float
    n: int
    confidence: float = 0.95

    @property
    def has_interval(self) -> bool:
        return self.n >= 2

    def half_width(self) -> float:
        return (self.high - self.low) / 2 if self.has_interval else math.nan


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> Interval:
    """Mean and Student-t interval (df = n-1, scale = standard error) of replicate values, e.g.
    one metric over seeds. One value: the mean with no interval (NaN bounds; a single run says
    nothing about seed-to-seed spread). Identical values: a zero-width interval."""
    from scipy import stats

    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    xs = _floats(values, "mean_ci")
    if not xs:
        raise ValueError("mean_ci: no values")
    mean = sum(xs) / len(xs)
    if len(xs) == 1:
        return Interval(mean, math.nan, math.nan, 1, confidence)
    sem = float(stats.sem(xs, ddof=1))
    if sem == 0.0:
        return Interval(mean, mean, mean, len(xs), confidence)
    low, high = stats.t.interval(confidence, len(xs) - 1, loc=mean, scale=sem)
    return Interval(mean, float(low), float(high), len(xs), confidence)


def _paired(a: Sequence[float], b: Sequence[float], name: str) -> tuple[list[float], list[float]]:
    xa, xb = _floats(a, name), _floats(b, name)
    if len(xa) != len(xb):
        raise ValueError(f"{name}: paired outcomes need equal lengths, got {len(xa)} and {len(xb)}")
    if not xa:
        raise ValueError(f"{name}: no paired outcomes")
    return xa, xb


def paired_bootstrap_diff(a: Sequence[float], b: Sequence[float], confidence: float = 0.95,
                          n_resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
                          ) -> tuple[float, float, float]:
    """(mean(a) - mean(b), low, high): `a[i]` and `b[i]` are the outcomes of the same problem
    under the two configurations; the bootstrap resamples the pairs together
    (scipy.stats.bootstrap, paired=True, percentile interval, rng seeded with `seed`). A
    constant difference (every pair alike) gives a zero-width interval."""
    import numpy as np
    from scipy import stats

    xa, xb = _paired(a, b, "paired_bootstrap_diff")
    diff = sum(xa) / len(xa) - sum(xb) / len(xb)
    if len({x - y for x, y in zip(xa, xb)}) == 1:
        return diff, diff, diff
    res = stats.bootstrap((np.asarray(xa), np.asarray(xb)),
                          lambda x, y, axis: np.mean(x, axis=axis) - np.mean(y, axis=axis),
                          paired=True, vectorized=True, n_resamples=n_resamples,
                          confidence_level=confidence, method="percentile",
                          rng=np.random.default_rng(seed))
    return diff, float(res.confidence_interval.low), float(res.confidence_interval.high)


def mcnemar_exact(a: Sequence[float], b: Sequence[float]) -> tuple[int, int, float]:
    """(b, c, p): b = pairs right under A only, c = right under B only; p = the exact two-sided
    McNemar p-value, a binomial test of b successes in b+c trials at 1/2
    (scipy.stats.binomtest). No discordant pair: p = 1 (nothing tells them apart)."""
    from scipy import stats

    xa, xb = _paired(a, b, "mcnemar_exact")
    for x in (*xa, *xb):
        if x not in (0.0, 1.0):
            raise ValueError(f"mcnemar_exact: outcomes must be 0/1 (correct or not), got {x!r}")
    only_a = sum(1 for x, y in zip(xa, xb) if x == 1.0 and y == 0.0)
    only_b = sum(1 for x, y in zip(xa, xb) if x == 0.0 and y == 1.0)
    if only_a + only_b == 0:
        return 0, 0, 1.0
    return only_a, only_b, float(stats.binomtest(only_a, only_a + only_b, 0.5).pvalue)


@dataclass(frozen=True)
class PairedDiff:
    """A - B on the same problems: accuracy difference, bootstrap interval, McNemar test."""

    diff: float
    low: float
    high: float
    n: int
    only_a: int
    only_b: int
    p_value: float


def paired_comparison(a: Sequence[float], b: Sequence[float], confidence: float = 0.95
                      ) -> PairedDiff:
    """Both paired statistics of 0/1 outcomes (`a[i]`, `b[i]`: the same problem)."""
    diff, low, high = paired_bootstrap_diff(a, b, confidence)
    only_a, only_b, p = mcnemar_exact(a, b)
    return PairedDiff(diff, low, high, len(a), only_a, only_b, p)
