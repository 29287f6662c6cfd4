"""Mann-Whitney rank test of a recent sample against a baseline, kept up to date run by run, and the
Hodges-Lehmann estimate of how much slower the recent runs are. Pure Python: a handful of bisections
per run instead of re-ranking both samples."""

from __future__ import annotations

import math
import statistics
from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable
from itertools import groupby, repeat

_NORMAL = statistics.NormalDist()


class RankComparison:
    """Sorted copies of the two samples, the doubled Mann-Whitney statistic 2U (pairs with the recent
    value above the baseline value count 2, ties 1) and the tie term sum(t^3 - t) over groups of equal
    values in the pooled sample, all updated with a few bisections per added or removed value. The two
    statistics can be handed in (as stored with the samples) to skip computing them."""

    def __init__(
        self, baseline: Iterable[int], recent: Iterable[int], u2: int | None = None, ties: int | None = None
    ) -> None:
        self.baseline = sorted(baseline)
        self.recent = sorted(recent)
        base, rec = self.baseline, self.recent
        if u2 is None:
            # map() keeps the loops in C.
            u2 = sum(map(bisect_left, repeat(base), rec)) + sum(map(bisect_right, repeat(base), rec))
        if ties is None:
            sizes = (len(list(group)) for _, group in groupby(sorted(base + rec)))
            ties = sum(t * t * t - t for t in sizes if t > 1)
        self.u2, self.ties = u2, ties

    def _equal(self, value: int) -> int:
        base, rec = self.baseline, self.recent
        return (
            bisect_right(base, value)
            - bisect_left(base, value)
            + bisect_right(rec, value)
            - bisect_left(rec, value)
        )

    def _pooled_add(self, value: int) -> None:
        c = self._equal(value)
        self.ties += 3 * c * c + 3 * c  # (c+1)^3 - (c+1) - (c^3 - c)

    def _pooled_remove(self, value: int) -> None:
        c = self._equal(value)
        self.ties -= 3 * c * c - 3 * c  # c^3 - c - ((c-1)^3 - (c-1))

    def add_recent(self, value: int) -> None:
        self._pooled_add(value)
        self.u2 += bisect_left(self.baseline, value) + bisect_right(self.baseline, value)
        insort(self.recent, value)

    def remove_recent(self, value: int) -> None:
        self._pooled_remove(value)
        self.u2 -= bisect_left(self.baseline, value) + bisect_right(self.baseline, value)
        del self.recent[bisect_left(self.recent, value)]

    def remove_baseline(self, value: int) -> None:
        self._pooled_remove(value)
        rec = self.recent
        self.u2 -= 2 * len(rec) - bisect_left(rec, value) - bisect_right(rec, value)
        del self.baseline[bisect_left(self.baseline, value)]

    def move_to_baseline(self, value: int) -> None:
        """A recent value ages into the baseline (the pooled sample, hence the ties, is unchanged)."""
        self.u2 -= bisect_left(self.baseline, value) + bisect_right(self.baseline, value)
        del self.recent[bisect_left(self.recent, value)]
        rec = self.recent
        self.u2 += 2 * len(rec) - bisect_left(rec, value) - bisect_right(rec, value)
        insort(self.baseline, value)

    def clear_baseline(self) -> None:
        while self.baseline:
            self.remove_baseline(self.baseline[-1])

    def z(self) -> float:
        """Normal approximation of U with tie correction and continuity correction, one-sided:
        large when the recent values are larger than the baseline values."""
        n, m = len(self.baseline), len(self.recent)
        pooled = n + m
        if not n or not m:
            return 0.0
        variance = n * m / 12 * ((pooled + 1) - self.ties / (pooled * (pooled - 1)))
        if variance <= 0:
            return 0.0
        # 2U - nm is an integer; the continuity correction of 1/2 on U is 1 on 2U.
        excess = self.u2 - n * m
        excess = max(excess - 1, 0) if excess > 0 else min(excess + 1, 0)
        return excess / (2 * math.sqrt(variance))

    def confidence(self) -> float:
        """One minus the one-sided p-value of "the recent values are larger"."""
        return _NORMAL.cdf(self.z())

    def share_slower_than(self, percent: int) -> float:
        """The share of (baseline, recent) pairs whose recent value is more than `percent` % above the
        baseline one (ties count half), in integer arithmetic: above 1/2 exactly when the
        Hodges-Lehmann ratio is more than 1 + percent/100 (up to the midpoint convention of an even
        number of pairs)."""
        rec = self.recent
        m = len(rec)
        pairs2 = 0
        for x in self.baseline:
            # y > (100 + percent) * x / 100 for integers y: y > floor of it; equal only if it is whole.
            bound, rest = divmod((100 + percent) * x, 100)
            above = bisect_right(rec, bound)
            pairs2 += 2 * (m - above) + (0 if rest else above - bisect_left(rec, bound))
        return pairs2 / (2 * m * len(self.baseline))


def shift_ratio(baseline: list[int], recent: list[int]) -> float:
    """The Hodges-Lehmann estimate on the log scale: the median of recent/baseline over all pairs.
    Zero baseline values count as infinitely slower (callers keep them below half)."""
    ratios = [y / x if x else (math.inf if y else 1.0) for x in baseline for y in recent]
    return float(statistics.median(ratios))


def median(values: list[int]) -> float:
    return float(statistics.median(values))


def log_spread(values: list[int]) -> float:
    """A robust standard deviation of log durations (1.4826 x their median absolute deviation), about
    the coefficient of variation for moderate noise; zero durations are read as 1 ms."""
    logs = [math.log(max(v, 1)) for v in values]
    centre = statistics.median(logs)
    return 1.4826 * statistics.median(abs(v - centre) for v in logs)
