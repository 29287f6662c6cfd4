"""Duration regressions per (user, app, event type): the newest runs against a baseline of the runs
before them, with a rank test for "slower than the noise explains", a minimum effect, and a baseline
that is held while a regression is open so that a lasting slowdown stays open until it is gone."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from statistics import NormalDist
from uuid import UUID

from consumers import settings
from consumers.insights import Insight
from consumers.rank_test import RankComparison, log_spread, median, shift_ratio

KIND = "performance_regression"


@dataclass
class DurationState:
    """What is stored per series: the baseline runs then the recent runs (oldest first), how many of
    them are the baseline, and whether a regression (measured against that baseline) is open."""

    durations: list[int]
    baseline_runs: int = 0
    regression_open: bool = False
    last_at: datetime | None = None
    rank_u2: int | None = None
    """The rank statistics of the two samples (see RankComparison), once they are compared."""
    rank_ties: int | None = None


@dataclass(frozen=True)
class Verdict:
    """One evaluation that changes or follows an insight, with the samples it was made on."""

    opened: bool
    critical: bool
    baseline: list[int]
    recent: list[int]
    confidence: float


class Series:
    """One series while a batch runs: the two samples as lists in arrival order, and their ranks once a
    verdict is possible (built then, and kept up to date run by run)."""

    open_z = NormalDist().inv_cdf(settings.REGRESSION_CONFIDENCE)
    stay_z = NormalDist().inv_cdf(settings.RESOLVE_CONFIDENCE)

    def __init__(self, state: DurationState) -> None:
        self.baseline = state.durations[: state.baseline_runs]
        self.recent = state.durations[state.baseline_runs :]
        self.regression_open = state.regression_open
        self.last_at = state.last_at
        self._ranks: RankComparison | None = None
        if state.rank_u2 is not None and state.rank_ties is not None:
            self._ranks = RankComparison(self.baseline, self.recent, state.rank_u2, state.rank_ties)

    def state(self) -> DurationState:
        ranks = self._ranks
        return DurationState(
            self.baseline + self.recent,
            len(self.baseline),
            self.regression_open,
            self.last_at,
            ranks.u2 if ranks else None,
            ranks.ties if ranks else None,
        )

    def push(self, duration: int) -> Verdict | None:
        """Add a run; a verdict when an insight opens, follows an open regression, or resolves."""
        ranks = self._ranks
        self.recent.append(duration)
        if ranks:
            ranks.add_recent(duration)
        if len(self.recent) > settings.RECENT_RUNS:
            aged = self.recent.pop(0)
            if self.regression_open:
                # The held baseline stays as it was: runs of the slowdown never join it.
                if ranks:
                    ranks.remove_recent(aged)
            else:
                self.baseline.append(aged)
                if ranks:
                    ranks.move_to_baseline(aged)
                if len(self.baseline) > settings.BASELINE_RUNS:
                    gone = self.baseline.pop(0)
                    if ranks:
                        ranks.remove_baseline(gone)
        if not self.regression_open and (
            len(self.recent) < settings.RECENT_RUNS or len(self.baseline) < settings.MIN_BASELINE_RUNS
        ):
            return None
        if not self.baseline:
            return None
        if ranks is None:
            ranks = self._ranks = RankComparison(self.baseline, self.recent)
        if ranks.baseline[(len(ranks.baseline) - 1) // 2] == 0:
            return None  # a baseline of mostly 0 ms runs gives no ratio to speak of
        if not self.regression_open:
            if ranks.z() < self.open_z or ranks.share_slower_than(settings.REGRESSION_PERCENT) <= 0.5:
                return None
            self.regression_open = True
            return self._verdict(ranks, opened=True)
        if ranks.z() >= self.stay_z and ranks.share_slower_than(settings.RESOLVE_PERCENT) > 0.5:
            return self._verdict(ranks, opened=True)
        verdict = self._verdict(ranks, opened=False)
        # Back to the baseline: learn it afresh from here, so a baseline that was low by chance
        # cannot raise the same alarm again.
        self.regression_open = False
        self.baseline = []
        ranks.clear_baseline()
        return verdict

    def _verdict(self, ranks: RankComparison, opened: bool) -> Verdict:
        critical = opened and ranks.share_slower_than(settings.CRITICAL_PERCENT) > 0.5
        return Verdict(opened, critical, list(ranks.baseline), list(ranks.recent), ranks.confidence())


def regression_insight(
    user_id: UUID, app_id: str, event_type: str, verdict: Verdict, first_seen: datetime, last_seen: datetime
) -> Insight:
    """The insight row for a verdict: open while the slowdown lasts, resolved when it is gone."""
    base, recent = median(verdict.baseline), median(verdict.recent)
    change = round(shift_ratio(verdict.baseline, verdict.recent) - 1, 4)
    spread = round(log_spread(verdict.baseline), 3)
    pct, n, m = round(change * 100), len(verdict.baseline), len(verdict.recent)
    where = f"{event_type} in {app_id}"
    if verdict.opened:
        status, severity = "open", ("critical" if verdict.critical else "warning")
        title = f"{where} is {pct}% slower"
        body = (
            f"Over its last {m} runs {where} took a median {recent:g} ms against {base:g} ms over the {n} "
            f"runs before it slowed down, about {pct}% slower where its runs usually vary by "
            f"{round(spread * 100)}% (confidence {verdict.confidence:.1%})."
        )
    else:
        status, severity = "resolved", "warning"
        title = f"{where} is back to normal speed"
        body = (
            f"Over its last {m} runs {where} took a median {recent:g} ms, back within "
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
            "recent_median": recent,
            "change": change,
            "spread": spread,
            "baseline_runs": n,
            "recent_runs": m,
            "confidence": round(verdict.confidence, 4),
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
