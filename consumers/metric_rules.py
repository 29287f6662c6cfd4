"""metrics_log daily rules: daily (UTC) count, sum and spread per source and metric, and four rules on
the daily averages judged against the day's own spread, each giving one insight per (rule, series,
day): open once a t test gives its condition confidence, resolved when the average no longer meets it."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from consumers import settings
from consumers.insights import Insight
from consumers.t_test import Summary, above_other, above_value

ONE_DAY = timedelta(days=1)


@dataclass(frozen=True)
class MetricRule:
    kind: str
    sources: frozenset[str]
    metrics: frozenset[str]
    threshold: float
    """Above this daily average, or (vs_previous_day) this many percent above the previous day's."""
    vs_previous_day: bool
    resolve_at: float
    """An open insight resolves once the average (or the percent increase) is no more than this."""
    label: str
    recommendation: str


RULES: tuple[MetricRule, ...] = (
    MetricRule(
        "lcp_regression",
        frozenset({"vercel", "client", "telemetry"}),
        frozenset({"lcp", "LCP"}),
        settings.LCP_INCREASE_PERCENT,
        True,
        settings.LCP_RESOLVE_PERCENT,
        "Largest Contentful Paint rose",
        "enable image compression and optimized images",
    ),
    MetricRule(
        "slow_queries",
        frozenset({"supabase"}),
        frozenset({"latencyMs", "avgLatencyMs"}),
        settings.SLOW_QUERY_MS,
        False,
        settings.SLOW_QUERY_MS,
        "Database latency is high",
        "add indexes for slow queries",
    ),
    MetricRule(
        "bundle_size",
        frozenset({"expo"}),
        frozenset({"bundleMB"}),
        settings.BUNDLE_MB,
        False,
        settings.BUNDLE_MB,
        "The app bundle is large",
        "optimize the bundle",
    ),
    MetricRule(
        "ci_queue",
        frozenset({"ci"}),
        frozenset({"queueLength"}),
        settings.CI_QUEUE_LENGTH,
        False,
        settings.CI_QUEUE_LENGTH,
        "CI jobs are queueing",
        "throttle workflow concurrency",
    ),
)
_RULE_BY_SERIES: dict[tuple[str, str], MetricRule] = {
    (source, metric): rule for rule in RULES for source in rule.sources for metric in rule.metrics
}


def rule_for(source: str, metric: str) -> MetricRule | None:
    return _RULE_BY_SERIES.get((source, metric))


DayKey = tuple[str, str, date]


@dataclass
class Daily:
    """A day's samples of one series: count, sum, and sum of squared deviations from the mean."""

    total: float
    samples: int
    m2: float = 0.0
    alert_open: bool = False

    @property
    def average(self) -> float:
        return self.total / self.samples

    def add(self, value: float) -> None:
        # Welford's update, so the spread needs no second pass and no stored samples.
        delta = value - self.average
        self.total += value
        self.samples += 1
        # Rounding can leave a hair below zero when every value is the same.
        self.m2 = max(self.m2 + delta * (value - self.average), 0.0)

    def summary(self) -> Summary:
        return Summary(self.samples, self.average, self.m2)


def samples_of(metric: Mapping[str, Any]) -> Iterator[tuple[str, float]]:
    """The numeric values of a metrics_log `metric` object: every numeric top-level key, or the
    {"name": ..., "value": ...} form."""
    name, value = metric.get("name"), metric.get("value")
    if isinstance(name, str) and isinstance(value, int | float) and not isinstance(value, bool):
        yield name, float(value)
        return
    for key, value in metric.items():
        if _is_number(value):
            yield key, float(value)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def utc_day(ts: datetime) -> date:
    return ts.astimezone(UTC).date()


@dataclass(frozen=True)
class Judgement:
    confidence: float
    """How sure the t test is that the day's average is above the threshold (or the previous day's)."""
    opens: bool
    stays: bool


def judge(rule: MetricRule, day: Daily, previous: Daily | None) -> Judgement | None:
    """The rule on a day; None while the day (or, day over day, the previous day) has too few
    samples to have a spread."""
    if day.samples < settings.MIN_DAILY_SAMPLES:
        return None
    if not rule.vs_previous_day:
        confidence = above_value(day.summary(), rule.threshold)
        return Judgement(
            confidence,
            day.average > rule.threshold and confidence >= settings.METRIC_CONFIDENCE,
            day.average > rule.resolve_at,
        )
    if previous is None or previous.samples < settings.MIN_DAILY_SAMPLES or previous.average <= 0:
        return None
    confidence = above_other(day.summary(), previous.summary())
    excess = (day.average - previous.average) * 100
    return Judgement(
        confidence,
        excess > previous.average * rule.threshold and confidence >= settings.METRIC_CONFIDENCE,
        excess > previous.average * rule.resolve_at,
    )


def metric_insight(
    rule: MetricRule,
    key: DayKey,
    day: Daily,
    previous: Daily | None,
    judged: Judgement,
    open_: bool,
    at: datetime,
) -> Insight:
    source, metric, when = key
    sd = day.summary().sd
    evidence: dict[str, Any] = {
        "source": source,
        "metric": metric,
        "day": when.isoformat(),
        "average": day.average,
        "samples": day.samples,
        "spread": sd,
        "threshold": rule.threshold,
        "confidence": round(judged.confidence, 4),
    }
    if rule.vs_previous_day and previous is not None:
        change = round((day.average - previous.average) / previous.average, 4)
        evidence["previous_average"] = previous.average
        evidence["previous_samples"] = previous.samples
        evidence["previous_spread"] = previous.summary().sd
        evidence["change"] = change
        compared = (
            f"{round(change * 100, 1):g}% above the previous day's {previous.average:g} "
            f"({previous.samples} samples)"
        )
    else:
        compared = f"against a threshold of {rule.threshold:g}"
    verdict = "" if open_ else " (resolved)"
    return Insight(
        user_id=None,
        kind=rule.kind,
        severity="warning",
        status="open" if open_ else "resolved",
        title=f"{rule.label} on {when.isoformat()} ({source} {metric}){verdict}",
        body=(
            f"Daily average {metric} from {source} is {day.average:g} over {day.samples} samples "
            f"(standard deviation {sd:.3g}), {compared}, with {judged.confidence:.1%} confidence. "
            f"Recommendation: {rule.recommendation}."
        ),
        evidence=evidence,
        fingerprint=f"metrics:{rule.kind}:{source}:{metric}:{when.isoformat()}",
        first_seen=at,
        last_seen=at,
    )


@dataclass
class MetricEffects:
    days: dict[DayKey, Daily] = field(default_factory=dict)
    touched: set[DayKey] = field(default_factory=set)
    insights: dict[DayKey, Insight] = field(default_factory=dict)


def needed_days(entries: Iterable[tuple[datetime, str, Mapping[str, Any]]]) -> set[DayKey]:
    """The stored days a batch needs: the ones it updates and, for day-over-day rules, their neighbours."""
    keys: set[DayKey] = set()
    for ts, source, metric in entries:
        day = utc_day(ts)
        for name, _ in samples_of(metric):
            keys.add((source, name, day))
            rule = rule_for(source, name)
            if rule is not None and rule.vs_previous_day:
                keys.add((source, name, day - ONE_DAY))
                keys.add((source, name, day + ONE_DAY))
    return keys


def analyze_metrics(
    entries: Iterable[tuple[datetime, str, Mapping[str, Any]]], stored: Mapping[DayKey, Daily]
) -> MetricEffects:
    """Add each entry (ts, source, metric) in order to its daily sums and re-evaluate the rules it can
    change (its day and, day over day, the next day). Pure."""
    fx = MetricEffects()

    def daily(key: DayKey) -> Daily | None:
        found = fx.days.get(key)
        if found is None and key in stored:
            before = stored[key]
            found = fx.days[key] = Daily(before.total, before.samples, before.m2, before.alert_open)
        return found

    def evaluate(rule: MetricRule, key: DayKey, at: datetime) -> None:
        day = daily(key)
        if day is None:
            return
        previous = daily((key[0], key[1], key[2] - ONE_DAY)) if rule.vs_previous_day else None
        judged = judge(rule, day, previous)
        if judged is None:
            return
        now_open = judged.stays if day.alert_open else judged.opens
        if not (now_open or day.alert_open):
            return
        fx.insights[key] = metric_insight(rule, key, day, previous, judged, now_open, at).follows(
            fx.insights.get(key)
        )
        day.alert_open = now_open
        fx.touched.add(key)

    for ts, source, metric in entries:
        when = utc_day(ts)
        for name, value in samples_of(metric):
            key = (source, name, when)
            day = daily(key)
            if day is None:
                fx.days[key] = Daily(value, 1)
            else:
                day.add(value)
            fx.touched.add(key)
            rule = rule_for(source, name)
            if rule is None:
                continue
            evaluate(rule, key, ts)
            if rule.vs_previous_day:
                evaluate(rule, (source, name, when + ONE_DAY), ts)
    return fx
