"""The evaluation statistics against known values: hand-computed cases and scipy's own results."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
from scipy import stats as sps

from vtc_lab.eval.stats import (
    BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, accuracy_stderr, mcnemar_exact, mean_ci,
    paired_bootstrap_diff, paired_comparison)


def test_accuracy_stderr_is_lm_eval_mean_stderr():
    # 3 of 4 right: mean .75, sample variance (3 * .0625 + .5625) / 3 = .25, sd .5, se .5/2
    assert accuracy_stderr([1, 0, 1, 1]) == pytest.approx(0.25, abs=1e-15)
    xs = [1, 0, 0, 1, 1, 1, 0, 1, 1, 1]
    assert accuracy_stderr(xs) == pytest.approx(statistics.stdev(xs) / math.sqrt(len(xs)), rel=1e-12)
    assert accuracy_stderr([1, 1, 1]) == 0.0
    assert math.isnan(accuracy_stderr([1])) and math.isnan(accuracy_stderr([]))


def test_mean_ci_is_the_t_interval():
    ci = mean_ci([0.5, 0.6, 0.7])
    # sd .1, se .1/sqrt(3), t(.975, df=2) = 4.302652729...
    half = 4.302652729749464 * 0.1 / math.sqrt(3)
    assert (ci.mean, ci.n) == (pytest.approx(0.6), 3)
    assert (ci.low, ci.high) == (pytest.approx(0.6 - half, rel=1e-9), pytest.approx(0.6 + half, rel=1e-9))
    xs = [0.31, 0.29, 0.4, 0.35, 0.33]
    low, high = sps.t.interval(0.9, 4, loc=np.mean(xs), scale=sps.sem(xs))
    ci = mean_ci(xs, confidence=0.9)
    assert (ci.low, ci.high) == (pytest.approx(low, rel=1e-12), pytest.approx(high, rel=1e-12))


def test_mean_ci_one_value_has_no_interval_and_equal_values_zero_width():
    one = mean_ci([0.4])
    assert one.mean == 0.4 and one.n == 1 and not one.has_interval
    assert math.isnan(one.low) and math.isnan(one.high)
    same = mean_ci([0.5, 0.5, 0.5])
    assert (same.low, same.high, same.n) == (0.5, 0.5, 3)
    with pytest.raises(ValueError, match="no values"):
        mean_ci([])
    with pytest.raises(ValueError, match="confidence"):
        mean_ci([1, 2], confidence=95)


def test_mcnemar_exact_by_hand():
    # 7 pairs right only under A, 2 only under B, 5 concordant: b + c = 9 trials at 1/2,
    # p = 2 * P(X <= 2) = 2 * (C(9,0) + C(9,1) + C(9,2)) / 2**9 = 2 * 46 / 512
    a = [1] * 7 + [0] * 2 + [1] * 3 + [0] * 2
    b = [0] * 7 + [1] * 2 + [1] * 3 + [0] * 2
    only_a, only_b, p = mcnemar_exact(a, b)
    assert (only_a, only_b) == (7, 2)
    assert p == pytest.approx(2 * (1 + 9 + 36) / 512, rel=1e-12)
    assert mcnemar_exact(b, a)[2] == pytest.approx(p)              # symmetric
    assert mcnemar_exact([1, 0, 1], [1, 0, 1]) == (0, 0, 1.0)      # no discordant pair
    # one discordant pair of one: P(X<=0) * 2 = 1 (capped)
    assert mcnemar_exact([1], [0])[2] == 1.0
    with pytest.raises(ValueError, match="0/1"):
        mcnemar_exact([0.5], [1])
    with pytest.raises(ValueError, match="equal lengths"):
        mcnemar_exact([1, 0], [1])


def test_paired_bootstrap_matches_scipy_and_is_reproducible():
    rng = np.random.default_rng(5)
    a = (rng.random(40) < 0.6).astype(float)
    b = (rng.random(40) < 0.4).astype(float)
    diff, low, high = paired_bootstrap_diff(a, b)
    ref = sps.bootstrap((a, b), lambda x, y, axis: x.mean(axis=axis) - y.mean(axis=axis),
                        paired=True, vectorized=True, n_resamples=BOOTSTRAP_RESAMPLES,
                        method="percentile", rng=np.random.default_rng(BOOTSTRAP_SEED))
    assert diff == pytest.approx(a.mean() - b.mean())
    assert (low, high) == (ref.confidence_interval.low, ref.confidence_interval.high)
    assert low < diff < high
    assert paired_bootstrap_diff(a, b) == (diff, low, high)           # same seed, same numbers
    # pairing matters: the same outcomes with B shuffled give another interval
    assert paired_bootstrap_diff(a, np.roll(b, 7))[1:] != (low, high)
    # every pair differs by the same amount: nothing to resample, zero width
    assert paired_bootstrap_diff([1, 1, 0], [0, 0, -1]) == (1.0, 1.0, 1.0)


def test_paired_comparison_bundles_both():
    a = [1, 1, 1, 0, 1, 0]
    b = [0, 1, 0, 0, 1, 0]
    res = paired_comparison(a, b)
    assert (res.n, res.only_a, res.only_b) == (6, 2, 0)
    assert res.diff == pytest.approx(2 / 6)
    assert res.p_value == pytest.approx(2 * 0.25)     # binom(2, 1/2): P(X >= 2) = 1/4, two-sided


# Tests from the mutation pass on eval/stats.py (docs/testing.md): each kills mutants that the
# tests above let survive.

def test_two_outcomes_already_have_a_standard_error_and_nan_is_refused():
    assert accuracy_stderr([1, 0]) == pytest.approx(0.5, abs=1e-15)  # sd .7071 / sqrt 2
    assert math.isnan(accuracy_stderr([1]))
    for fn, args in ((accuracy_stderr, ([1, math.nan],)), (mean_ci, ([1.0, math.nan],)),
                     (mcnemar_exact, ([1, math.nan], [0, 0]))):
        with pytest.raises(ValueError, match=rf"{fn.__name__}: NaN among the values"):
            fn(*args)


def test_interval_width_and_the_confidence_bounds():
    two = mean_ci([0.5, 0.7])
    low, high = sps.t.interval(0.95, 1, loc=0.6, scale=sps.sem([0.5, 0.7]))
    assert (two.low, two.high, two.n) == (pytest.approx(low), pytest.approx(high), 2)
    assert two.has_interval and two.half_width() == pytest.approx((high - low) / 2)
    one = mean_ci([0.5])
    assert not one.has_interval and math.isnan(one.half_width())
    for bad in (0, 1, 1.5, -0.1):
        with pytest.raises(ValueError, match=r"confidence must be in \(0, 1\)"):
            mean_ci([0.5, 0.7], confidence=bad)
    assert mean_ci([0.5, 0.7], confidence=0.5).half_width() < two.half_width()


def test_paired_statistics_refuse_no_pairs_and_short_cut_a_constant_difference():
    for fn in (paired_bootstrap_diff, mcnemar_exact):
        with pytest.raises(ValueError, match=rf"{fn.__name__}: no paired outcomes"):
            fn([], [])
    # every pair alike: the difference is exact (the short cut skips the bootstrap)
    assert paired_bootstrap_diff([1, 0], [1, 0]) == (0.0, 0.0, 0.0)
    assert paired_bootstrap_diff([1, 1], [0, 0]) == (1.0, 1.0, 1.0)


def test_a_single_value_gives_nan_without_scipy_warning():
    """One problem / one seed: NaN spread, and no SmallSampleWarning in the user's output (the
    guards answer before scipy would warn)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(accuracy_stderr([1]))
        one = mean_ci([0.5])
        assert one.mean == 0.5 and math.isnan(one.low) and math.isnan(one.high)


def test_mcnemar_counts_balanced_discordant_pairs():
    """As many pairs right under A only as under B only: p = 1, and the counts are reported
    (not the (0, 0) of 'no discordant pair')."""
    assert mcnemar_exact([1, 0, 1, 1], [0, 1, 1, 1]) == (1, 1, 1.0)
    assert mcnemar_exact([1, 1], [1, 1]) == (0, 0, 1.0)
