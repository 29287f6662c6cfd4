"""Student's t tests from summaries (count, mean, sum of squared deviations), in pure Python: what the
daily metrics rules need to judge a day's average against its own spread."""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

_NORMAL = NormalDist()
_EXACT_DF = 1000
"""Above this many degrees of freedom the normal tail is used (they differ by under 1e-3)."""


def t_upper_tail(t: float, df: int) -> float:
    """P(T > t) for Student's t with `df` (>= 1) degrees of freedom: the closed forms for integer df
    (Abramowitz and Stegun 26.7.3 and 26.7.4)."""
    if df > _EXACT_DF:
        return 1 - _NORMAL.cdf(t)
    theta = math.atan(abs(t) / math.sqrt(df))
    cos2 = math.cos(theta) ** 2
    if df % 2:
        series, term = 0.0, math.cos(theta)
        for k in range(1, (df - 1) // 2 + 1):
            series += term
            term *= cos2 * (2 * k) / (2 * k + 1)
        inside = 2 / math.pi * (theta + math.sin(theta) * series)
    else:
        series, term = 0.0, 1.0
        for k in range(df // 2):
            series += term
            term *= cos2 * (2 * k + 1) / (2 * k + 2)
        inside = math.sin(theta) * series
    # `inside` is P(|T| < |t|).
    return (1 - inside) / 2 if t >= 0 else (1 + inside) / 2


@dataclass(frozen=True)
class Summary:
    """A sample as its count, mean and sum of squared deviations from the mean (Welford's M2)."""

    n: int
    mean: float
    m2: float

    @property
    def variance(self) -> float:
        return max(self.m2, 0.0) / (self.n - 1) if self.n > 1 else 0.0

    @property
    def sd(self) -> float:
        return math.sqrt(self.variance)


def _confidence(diff: float, se2: float, df: int) -> float:
    if se2 <= 0:
        return 1.0 if diff > 0 else (0.5 if diff == 0 else 0.0)
    return 1 - t_upper_tail(diff / math.sqrt(se2), df)


def above_value(sample: Summary, value: float) -> float:
    """Confidence that the sample's true mean is above `value` (one-sample t test, n >= 2)."""
    return _confidence(sample.mean - value, sample.variance / sample.n, sample.n - 1)


def above_other(sample: Summary, other: Summary) -> float:
    """Confidence that the sample's true mean is above the other's (Welch's t test, each n >= 2; the
    Welch-Satterthwaite degrees of freedom rounded down)."""
    a, b = sample.variance / sample.n, other.variance / other.n
    se2 = a + b
    if se2 <= 0:
        return _confidence(sample.mean - other.mean, 0.0, 1)
    df = se2 * se2 / (a * a / (sample.n - 1) + b * b / (other.n - 1))
    return _confidence(sample.mean - other.mean, se2, max(1, math.floor(df)))
