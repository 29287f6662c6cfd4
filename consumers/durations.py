"""Duration regressions: the last 40 durations per (user, app, event type), newest 20 vs older 20."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from consumers import settings
from consumers.insights import Insight

KIND = "performance_regression"


@dataclass
class Window:
    """The durations of one (user, app, event type), oldest first, and whether an insight is open."""

    durations: list[int]
    regression_open: bool = False
    last_at: datetime | None = None


@dataclass(frozen=True)
class Comparison:
    old_median: float
    new_median: float

    @property
    def change(self) -> float:
        return round((self.new_median - self.old_median) / self.old_median, 4)

    @property
    def regressed(self) -> bool:
        # In integer percent arithmetic: medians are halves at worst, so this is exact.
        return (self.new_median - self.old_median) * 100 > self.old_median * settings.REGRESSION_PERCENT

    @property
    def critical(self) -> bool:
        return (self.new_median - self.old_median) * 100 > self.old_median * settings.CRITICAL_PERCENT


def median(values: list[int]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    if len(ordered) % 2:
        return float(ordered[mid])
    return (ordered[mid - 1] + ordered[mid]) / 2


def compare(durations: list[int]) -> Comparison | None:
    """Older half vs newer half of a full window; None while the window is not full or the old
    median is zero (no ratio to speak of)."""
    if len(durations) < settings.DURATION_WINDOW:
        return None
    old = median(durations[: settings.DURATION_HALF])
    if old == 0:
        return None
    return Comparison(old, median(durations[settings.DURATION_HALF :]))


def regression_insight(user_id: UUID, app_id: str, event_type: str, cmp: Comparison, at: datetime) -> Insight:
    """The insight row (as JSON for the upsert) for a comparison: open if regressed, else resolved."""
    pct = round(cmp.change * 100, 1)
    if cmp.regressed:
        status, severity = "open", ("critical" if cmp.critical else "warning")
        title = f"{event_type} in {app_id} is {pct:g}% slower"
        body = (
            f"The median duration of {event_type} in {app_id} rose from {cmp.old_median:g} ms to "
            f"{cmp.new_median:g} ms over the last {settings.DURATION_WINDOW} runs."
        )
    else:
        status, severity = "resolved", "warning"
        title = f"{event_type} in {app_id} is back to normal speed"
        body = (
            f"The median duration of {event_type} in {app_id} is {cmp.new_median:g} ms against "
            f"{cmp.old_median:g} ms before, within {settings.REGRESSION_PERCENT}%."
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
            "old_median": cmp.old_median,
            "new_median": cmp.new_median,
            "change": cmp.change,
        },
        fingerprint=f"{KIND}:{user_id}:{app_id}:{event_type}",
        first_seen=at,
        last_seen=at,
    )


WindowKey = tuple[UUID, str, str]


@dataclass
class DurationEffects:
    windows: dict[WindowKey, Window] = field(default_factory=dict)
    insights: dict[WindowKey, Insight] = field(default_factory=dict)


def analyze_durations(
    rows: Iterable[tuple[UUID, str, str, int, datetime]], windows: Mapping[WindowKey, Window]
) -> DurationEffects:
    """Feed (user, app, event type, duration ms, event time) in order through the windows; an insight
    opens on a regression, follows it while it lasts and is resolved when the halves are back within
    the threshold. Pure."""
    fx = DurationEffects()
    for user, app, event_type, duration, at in rows:
        key = (user, app, event_type)
        window = fx.windows.get(key)
        if window is None:
            before = windows.get(key)
            window = Window(list(before.durations), before.regression_open) if before else Window([])
            fx.windows[key] = window
        window.durations.append(duration)
        if len(window.durations) > settings.DURATION_WINDOW:
            del window.durations[0]
        window.last_at = at if window.last_at is None else max(window.last_at, at)
        cmp = compare(window.durations)
        if cmp is None or not (cmp.regressed or window.regression_open):
            continue
        fx.insights[key] = regression_insight(user, app, event_type, cmp, at).follows(fx.insights.get(key))
        window.regression_open = cmp.regressed
    return fx
