"""Duration regressions per (user, app, event type): the newest runs against a baseline of the runs
before them, with a t test on log durations for "slower than the noise explains", a minimum effect,
and a baseline that is held while a regression is open so that a lasting slowdown stays open until
it is gone."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from consumers import settings
from consumers.insights import Insight
from consumers.t_test import Summary, above_other

KIND = "performance_regression"

LOG_SCALE = 1_000_000
"""Log durations are kept in millionths (integers), so that their sums are exact whatever the order in
which runs were added and removed: the same rows give the same state and verdicts for any batch size."""


def log_units(duration: int) -> int:
    """The natural log of a duration in ms, in millionths; 0 ms reads as 1 ms."""
    return round(math.log(duration) * LOG_SCALE) if duration > 1 else 0


def _ratio_units(percent: int) -> int:
    return round(math.log1p(percent / 100) * LOG_SCALE)


@dataclass
class DurationState:
    """What is stored per series: the baseline runs then the recent runs (oldest first), how many of
    them are the baseline, whether a regression (measured against that baseline) is open, and the sums
    of the two samples' log units and of their squares (None: not summed yet)."""

    durations: list[int]
    baseline_runs: int = 0
    regression_open: bool = False
    last_at: datetime | None = None
    log_sums: tuple[int, int, int, int] | None = None
    """(baseline sum, baseline sum of squares, recent sum, recent sum of squares) of log_units."""


@dataclass(frozen=True)
class Verdict:
    """One evaluation that changes or follows an insight, with the samples it was made on."""

    opened: bool
    critical: bool
    baseline: tuple[int, ...]
    recent: tuple[int, ...]
    sums: tuple[int, int, int, int]


class Series:
    """One series while a batch runs: its runs (the baseline's, then the recent ones, in arrival order)
    in one list and the two samples' exact log sums, updated in O(1) per run."""

    open_t = settings.REGRESSION_STANDARD_ERRORS
    resolve_t = settings.RESOLVE_STANDARD_ERRORS
    min_effect = _ratio_units(settings.REGRESSION_PERCENT)
    resolve_effect = _ratio_units(settings.RESOLVE_PERCENT)
    critical_effect = _ratio_units(settings.CRITICAL_PERCENT)
    winsor_floor = round(math.log(settings.WINSOR_MIN_RATIO) * LOG_SCALE)

    def __init__(self, state: DurationState) -> None:
        self.runs = list(state.durations)
        self.n = state.baseline_runs
        self.regression_open = state.regression_open
        self.last_at = state.last_at
        if state.log_sums is None:
            self.b_sum, self.b_sq = _sums(self.runs[: self.n])
            self.r_sum, self.r_sq = _sums(self.runs[self.n :])
        else:
            self.b_sum, self.b_sq, self.r_sum, self.r_sq = state.log_sums

    def state(self) -> DurationState:
        """The state to store (sharing this series' list: use it once the series is done)."""
        sums = (self.b_sum, self.b_sq, self.r_sum, self.r_sq)
        return DurationState(self.runs, self.n, self.regression_open, self.last_at, sums)

    def push(self, duration: int) -> Verdict | None:
        """Add a run; a verdict when an insight opens, follows an open regression, or resolves."""
        runs, n = self.runs, self.n
        duration, units = self._winsorized(duration, log_units(duration), into_baseline=False)
        runs.append(duration)
        self.r_sum += units
        self.r_sq += units * units
        if len(runs) - n > settings.RECENT_RUNS:
            aged = runs[n]
            units = log_units(aged)
            if self.regression_open:
                # The held baseline stays as it was: runs of the slowdown never join it.
                del runs[n]
                self.r_sum -= units
                self.r_sq -= units * units
            else:
                # Bounds taken while the recent sample still counts it: counts and sums agree.
                runs[n], joining = self._winsorized(aged, units, into_baseline=True)
                self.r_sum -= units
                self.r_sq -= units * units
                n += 1
                self.b_sum += joining
                self.b_sq += joining * joining
                if n > settings.BASELINE_RUNS:
                    units = log_units(runs.pop(0))
                    n -= 1
                    self.b_sum -= units
                    self.b_sq -= units * units
                self.n = n
        m = len(runs) - n
        if not self.regression_open and (m < settings.RECENT_RUNS or n < settings.MIN_BASELINE_RUNS):
            return None
        if n < 2 or m < 2:
            return None
        # The difference of the mean log units, times n m to stay an integer.
        excess = n * self.r_sum - m * self.b_sum
        t = self._t(excess, n, m)
        if not self.regression_open:
            if t < self.open_t or excess <= n * m * self.min_effect:
                return None
            if statistics.median(runs[:n]) == 0:
                return None  # a baseline of mostly 0 ms runs gives no ratio to speak of
            self.regression_open = True
            return self._verdict(excess, opened=True)
        if t >= self.resolve_t and excess > n * m * self.resolve_effect:
            return self._verdict(excess, opened=True)
        verdict = self._verdict(excess, opened=False)
        # Back to the baseline: learn both samples afresh from the runs after this one, so that neither
        # a baseline that was low by chance nor the last slow runs can raise the same alarm again.
        self.regression_open = False
        runs.clear()
        self.n = self.b_sum = self.b_sq = self.r_sum = self.r_sq = 0
        return verdict

    def _winsorized(self, duration: int, units: int, into_baseline: bool) -> tuple[int, int]:
        """The duration (and its log units) pulled in to the bounds of the sample it joins (or, while
        that has fewer than WINSOR_MIN_RUNS runs, of the other one): its mean log duration plus or
        minus WINSOR_SPREADS standard deviations, and never closer than a factor WINSOR_MIN_RATIO of
        its geometric mean. A rare very slow (or 0 ms) run then can neither hide a slowdown by
        inflating the spread nor fake one."""
        baseline = (self.n, self.b_sum, self.b_sq)
        recent = (len(self.runs) - self.n, self.r_sum, self.r_sq)
        own, other = (baseline, recent) if into_baseline else (recent, baseline)
        if own[0] >= settings.WINSOR_MIN_RUNS:
            count, total, squares = own
        elif other[0] >= settings.WINSOR_MIN_RUNS:
            count, total, squares = other
        else:
            return duration, units
        mean = total / count
        if abs(units - mean) <= self.winsor_floor:
            return duration, units
        sd = math.sqrt(max(count * squares - total * total, 0) / (count * (count - 1)))
        reach = max(settings.WINSOR_SPREADS * sd, self.winsor_floor)
        if mean - reach <= units <= mean + reach:
            return duration, units
        pulled = round(math.exp((mean + reach if units > mean else mean - reach) / LOG_SCALE))
        return pulled, log_units(pulled)

    def _t(self, excess: int, n: int, m: int) -> float:
        """Welch's t statistic of the recent mean log duration over the baseline's."""
        # With B = n(n-1) var_b and R = m(m-1) var_r (exact integers), (n m)^2 (var_b/n + var_r/m) is
        # m^2 B/(n-1) + n^2 R/(m-1), and excess is the mean difference times n m.
        b = n * self.b_sq - self.b_sum * self.b_sum
        r = m * self.r_sq - self.r_sum * self.r_sum
        se2 = m * m * b / (n - 1) + n * n * r / (m - 1)
        if se2 <= 0:
            return math.inf if excess > 0 else (0.0 if excess == 0 else -math.inf)
        return excess / math.sqrt(se2)

    def _verdict(self, excess: int, opened: bool) -> Verdict:
        n = self.n
        critical = opened and excess > n * (len(self.runs) - n) * self.critical_effect
        sums = (self.b_sum, self.b_sq, self.r_sum, self.r_sq)
        return Verdict(opened, critical, tuple(self.runs[:n]), tuple(self.runs[n:]), sums)


def _sums(values: list[int]) -> tuple[int, int]:
    units = [log_units(v) for v in values]
    return sum(units), sum(u * u for u in units)


def _summary(count: int, total: int, squares: int) -> Summary:
    """Count, mean and sum of squared deviations of a sample's natural log durations."""
    return Summary(count, total / count / LOG_SCALE, (count * squares - total * total) / count / LOG_SCALE**2)


def regression_insight(
    user_id: UUID, app_id: str, event_type: str, verdict: Verdict, first_seen: datetime, last_seen: datetime
) -> Insight:
    """The insight row for a verdict: open while the slowdown lasts, resolved when it is gone."""
    b_sum, b_sq, r_sum, r_sq = verdict.sums
    n, m = len(verdict.baseline), len(verdict.recent)
    baseline, recent = _summary(n, b_sum, b_sq), _summary(m, r_sum, r_sq)
    base, now = float(statistics.median(verdict.baseline)), float(statistics.median(verdict.recent))
    change = round(math.exp(recent.mean - baseline.mean) - 1, 4)
    spread = round(baseline.sd, 3)
    confidence = above_other(recent, baseline)
    pct = round(change * 100)
    where = f"{event_type} in {app_id}"
    if verdict.opened:
        status, severity = "open", ("critical" if verdict.critical else "warning")
        title = f"{where} is {pct}% slower"
        body = (
            f"Over its last {m} runs {where} took a median {now:g} ms against {base:g} ms over the {n} "
            f"runs before it slowed down, about {pct}% slower where its runs usually vary by "
            f"{round(spread * 100)}% (confidence {confidence:.1%})."
        )
    else:
        status, severity = "resolved", "warning"
        title = f"{where} is back to normal speed"
        body = (
            f"Over its last {m} runs {where} took a median {now:g} ms, back within "
            f"{settings.RESOLVE_PERCENT}% of the {base:g} ms it took before it slowed down."
        )
    return Insight(
        user_id=user_id,
        kind=KIND,
        severity=severity,
        status=status,
        title=title,
        body=body,
        evidence={
            "app_id": app_id,
            "event_type": event_type,
            "baseline_median": base,
            "recent_median": now,
            "change": change,
            "spread": spread,
            "baseline_runs": n,
            "recent_runs": m,
            "confidence": round(confidence, 4),
        },
        fingerprint=f"{KIND}:{user_id}:{app_id}:{event_type}",
        first_seen=first_seen,
        last_seen=last_seen,
    )


SeriesKey = tuple[UUID, str, str]


@dataclass
class _Pending:
    verdict: Verdict
    first_seen: datetime
    last_seen: datetime
    severity: str | None


@dataclass
class DurationEffects:
    states: dict[SeriesKey, DurationState] = field(default_factory=dict)
    insights: dict[SeriesKey, Insight] = field(default_factory=dict)


def analyze_durations(
    rows: Iterable[tuple[UUID, str, str, int, datetime]], stored: Mapping[SeriesKey, DurationState]
) -> DurationEffects:
    """Feed (user, app, event type, duration ms, event time) in order through the series. One insight
    per series and batch: the last verdict, first seen at the first one. Pure."""
    series: dict[SeriesKey, Series] = {}
    pending: dict[SeriesKey, _Pending] = {}
    for user, app, event_type, duration, at in rows:
        key = (user, app, event_type)
        one = series.get(key)
        if one is None:
            before = stored.get(key)
            one = series[key] = Series(before or DurationState([]))
        one.last_at = at if one.last_at is None else max(one.last_at, at)
        verdict = one.push(duration)
        if verdict is None:
            continue
        severity = ("critical" if verdict.critical else "warning") if verdict.opened else None
        earlier = pending.get(key)
        if earlier is None:
            pending[key] = _Pending(verdict, at, at, severity)
        else:
            earlier.verdict, earlier.last_seen = verdict, max(earlier.last_seen, at)
            earlier.severity = severity or earlier.severity
    fx = DurationEffects(states={k: s.state() for k, s in series.items()})
    for key, p in pending.items():
        insight = regression_insight(*key, p.verdict, p.first_seen, p.last_seen)
        if not p.verdict.opened and p.severity is not None:
            insight.severity = p.severity  # a resolution keeps the severity it had while open
        fx.insights[key] = insight
    return fx
