"""Binomial confidence bounds on error rates, and how many comparisons a target rate needs.

An error rate counted over n comparisons is a binomial proportion; these say
what it can and cannot claim. The bounds are scipy's. Checked against a
40-digit reference from k = 0 to n and n up to 1e8, the exact one is off by
1e-9 relative at worst (one or two events among tens of millions of trials;
~1e-16 elsewhere), far below the two digits a report prints.

``scipy.stats`` is imported inside each function: it takes about a second to
import, the service imports ``app.eval`` at start-up, and only a report or a
calibration asks for a bound.
"""

from __future__ import annotations

import math


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Two-sided Wilson score interval for k events in n trials; sane at k = 0 or k = n, unlike Wald.

    No trials rule nothing out: (0, 1).
    """
    from scipy import stats

    _check_counts(k, n)
    if n == 0:
        return 0.0, 1.0
    interval = stats.binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    return float(interval.low), float(interval.high)


def clopper_pearson_upper(k: int, n: int, confidence: float = 0.95) -> float:
    """Exact one-sided upper bound on a rate after k events in n trials.

    It is the p at which P(X <= k | n, p) = 1 - confidence: any larger rate
    would rarely produce so few events. That p is the ``confidence`` quantile
    of Beta(k + 1, n - k).
    """
    from scipy import stats

    _check_counts(k, n)
    if not 0.5 <= confidence < 1:
        raise ValueError(f"confidence must be in [0.5, 1), got {confidence}")
    if k == n:
        return 1.0  # every trial an event: no rate can be ruled out (and Beta(n + 1, 0) is undefined)
    return float(stats.beta.ppf(confidence, k + 1, n - k))


def min_comparisons(target_rate: float, confidence: float = 0.95) -> int:
    """Fewest trials in which zero errors would show the rate is below ``target_rate``.

    This is the measurability rule: with fewer, even a perfect result leaves a
    Clopper–Pearson upper bound above the target (about 3 / target at 95%).
    The answer is exact for ``clopper_pearson_upper`` itself: its bound at the
    answer is <= target, and one trial fewer leaves it above.
    """
    if not 0 < target_rate <= 1:
        raise ValueError(f"target rate must be in (0, 1], got {target_rate}")
    # The zero-error bound is 1 - (1 - confidence)**(1/n); solving it for n starts within a step.
    n = max(1, math.ceil(math.log(1 - confidence) / math.log1p(-target_rate))) if target_rate < 1 else 1
    # These steps only absorb the closed form's rounding at the boundary.
    while n > 1 and clopper_pearson_upper(0, n - 1, confidence) <= target_rate:
        n -= 1
    while clopper_pearson_upper(0, n, confidence) > target_rate:
        n += 1
    return n


def _check_counts(k: int, n: int) -> None:
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
