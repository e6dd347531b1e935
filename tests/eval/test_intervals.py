"""Confidence bounds on error rates, against exact references, and the measurability rule.

What a user notices: a report's "FAR < x at 95%" is the exact bound the
comparisons support, and a target FAR is flagged as not measurable exactly
when too few comparisons were made to show it.
"""

from __future__ import annotations

import math

import pytest

from app.eval import intervals


def test_clopper_pearson_known_values() -> None:
    assert intervals.clopper_pearson_upper(0, 10) == pytest.approx(0.2589, abs=1e-4)
    assert intervals.clopper_pearson_upper(1, 10) == pytest.approx(0.3942, abs=1e-4)
    assert intervals.clopper_pearson_upper(10, 10) == 1.0
    # References computed at 40 digits (mpmath: Newton's method on the exact binomial tail).
    assert intervals.clopper_pearson_upper(3, 20_000) == pytest.approx(3.8763675578637101883e-4, rel=1e-9)
    assert intervals.clopper_pearson_upper(20_000, 10**8) == pytest.approx(2.0234166677208015808e-4, rel=1e-9)
    # The FAR 1e-2 row of a calibration on 60 million impostor comparisons.
    assert intervals.clopper_pearson_upper(600_000, 6 * 10**7) == pytest.approx(
        1.002115432598478393e-2, rel=1e-9
    )
    # A false accept or two among tens of millions is scipy's hardest case (~1e-9 relative).
    assert intervals.clopper_pearson_upper(1, 10**8) == pytest.approx(4.7438644295886490493e-8, rel=1e-8)
    assert intervals.clopper_pearson_upper(2, 6 * 10**7) == pytest.approx(1.0492988994155682481e-7, rel=1e-8)
    # k = 0 is 1 - 0.05**(1/n) (the naive float form loses ~1e-8 here).
    assert intervals.clopper_pearson_upper(0, 10**8) == pytest.approx(2.9957322286819321675e-8, rel=1e-12)


@pytest.mark.parametrize(("k", "n"), [(1, 10), (4, 37), (25, 1000), (120, 2000)])
def test_clopper_pearson_bound_leaves_five_percent_lower_tail(k: int, n: int) -> None:
    upper = intervals.clopper_pearson_upper(k, n)
    tail = math.fsum(math.comb(n, j) * upper**j * (1 - upper) ** (n - j) for j in range(k + 1))
    assert tail == pytest.approx(0.05, rel=1e-9)


def test_wilson_known_values() -> None:
    assert intervals.wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    low, high = intervals.wilson_interval(0, 10)
    assert low == 0.0
    assert high == pytest.approx(0.2775, abs=1e-4)
    low, high = intervals.wilson_interval(10, 10)
    assert low == pytest.approx(0.7225, abs=1e-4)
    assert high == 1.0
    assert intervals.wilson_interval(0, 0) == (0.0, 1.0)  # no trials rule nothing out


def test_wilson_approaches_the_normal_interval_on_many_trials() -> None:
    k, n = 600_000, 6 * 10**7
    p = k / n
    half = 1.959963984540054 * math.sqrt(p * (1 - p) / n)  # the 97.5% normal quantile
    # Wilson centres on (k + z²/2) / (n + z²): ~3e-6 relative away from k / n here.
    assert intervals.wilson_interval(k, n) == pytest.approx((p - half, p + half), rel=1e-5)


def test_interval_inputs_are_checked() -> None:
    with pytest.raises(ValueError):
        intervals.clopper_pearson_upper(11, 10)
    with pytest.raises(ValueError):
        intervals.clopper_pearson_upper(1, 10, confidence=1.0)
    with pytest.raises(ValueError):
        intervals.wilson_interval(-1, 10)
    with pytest.raises(ValueError):
        intervals.min_comparisons(0.0)


def test_min_comparisons_is_where_zero_errors_first_prove_the_target() -> None:
    needed = intervals.min_comparisons(1e-3)
    assert needed == 2995  # ln(0.05) / ln(1 - 1e-3) = 2994.2
    assert intervals.clopper_pearson_upper(0, needed) <= 1e-3 < intervals.clopper_pearson_upper(0, needed - 1)


@pytest.mark.parametrize("target", [0.5, 0.3, 1e-1, 1e-2, 1e-4, 1e-5, 1e-6, 1e-7, 1.0])
def test_min_comparisons_brackets_the_target(target: float) -> None:
    needed = intervals.min_comparisons(target)
    assert intervals.clopper_pearson_upper(0, needed) <= target
    if needed > 1:
        assert intervals.clopper_pearson_upper(0, needed - 1) > target


@pytest.mark.parametrize("n", [2, 10, 2995, 299_573, 3_000_000, 60_000_000])
def test_a_target_equal_to_a_zero_error_bound_needs_exactly_that_many(n: int) -> None:
    # The boundary itself: n comparisons without an error show exactly this bound, n - 1 do not.
    assert intervals.min_comparisons(intervals.clopper_pearson_upper(0, n)) == n
