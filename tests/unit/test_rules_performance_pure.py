"""The performance rules as pure functions: the rank test against brute force, the t tests against
tables, the held baseline, the insight rows, batch-size independence and the daily metric rules."""

from __future__ import annotations

import math
import random
import statistics
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from consumers import settings
from consumers.durations import DurationState, Series, SeriesKey, analyze_durations
from consumers.insights import Insight
from consumers.metric_rules import Daily, analyze_metrics, samples_of
from consumers.rank_test import RankComparison, shift_ratio
from consumers.t_test import Summary, above_other, above_value, t_upper_tail

T0 = datetime(2026, 3, 1, tzinfo=UTC)
U = uuid.UUID("00000000-0000-4000-8000-000000000001")
KEY = (U, "vscode", "build")


def steady(median: int, runs: int) -> list[int]:
    """Durations within 5 ms of `median`, in a fixed shuffled order."""
    return [median + (i * 7) % 11 - 5 for i in range(runs)]


def rows(durations: list[int], start: int = 0) -> list[tuple[uuid.UUID, str, str, int, datetime]]:
    return [(*KEY, d, T0 + timedelta(seconds=start + i)) for i, d in enumerate(durations)]


def opened_at(durations: list[int]) -> list[bool]:
    series = Series(DurationState([]))
    flags = []
    for d in durations:
        series.push(d)
        flags.append(series.regression_open)
    return flags


# The rank test, against brute force.


def brute_z(baseline: list[int], recent: list[int]) -> float:
    pooled = sorted(baseline + recent)
    rank = {v: (pooled.index(v) + 1 + len(pooled) - pooled[::-1].index(v)) / 2 for v in pooled}
    n, m, total = len(baseline), len(recent), len(pooled)
    u = sum(rank[y] for y in recent) - m * (m + 1) / 2
    ties = sum(pooled.count(v) ** 3 - pooled.count(v) for v in set(pooled))
    variance = n * m / 12 * ((total + 1) - ties / (total * (total - 1)))
    excess = u - n * m / 2
    excess = max(excess - 0.5, 0) if excess > 0 else min(excess + 0.5, 0)
    return excess / math.sqrt(variance) if variance > 0 else 0.0


def test_rank_statistics_follow_every_change_of_the_samples() -> None:
    rng = random.Random(5)
    baseline = [rng.randint(1, 12) for _ in range(15)]
    recent = [rng.randint(1, 12) for _ in range(10)]
    ranks = RankComparison(baseline, recent)
    for _ in range(400):
        op = rng.choice(("add", "remove_recent", "age", "remove_baseline"))
        if op == "add" or len(recent) < 2:
            value = rng.randint(1, 14)
            recent.append(value)
            ranks.add_recent(value)
        elif op == "remove_recent":
            value = recent.pop(rng.randrange(len(recent)))
            ranks.remove_recent(value)
        elif op == "age":
            value = recent.pop(rng.randrange(len(recent)))
            baseline.append(value)
            ranks.move_to_baseline(value)
        elif len(baseline) > 2:
            value = baseline.pop(rng.randrange(len(baseline)))
            ranks.remove_baseline(value)
        fresh = RankComparison(baseline, recent)
        assert (ranks.u2, ranks.ties) == (fresh.u2, fresh.ties)
        assert ranks.z() == pytest.approx(brute_z(baseline, recent))
    ranks.clear_baseline()
    assert (ranks.baseline, ranks.u2, ranks.ties) == ([], 0, RankComparison([], recent).ties)


def test_share_of_slower_pairs_agrees_with_the_hodges_lehmann_ratio() -> None:
    assert RankComparison([100], [110]).share_slower_than(10) == 0.5  # exactly 10 %: a tie
    assert RankComparison([100], [111]).share_slower_than(10) == 1.0
    assert RankComparison([7], [8]).share_slower_than(10) == 1.0  # 7.7 ms is not whole
    rng = random.Random(9)
    for _ in range(200):
        baseline = [rng.randint(50, 150) for _ in range(rng.randint(1, 9))]
        recent = [rng.randint(50, 200) for _ in range(rng.randint(1, 9))]
        ranks = RankComparison(baseline, recent)
        pairs = [(x, y) for x in baseline for y in recent]
        above = sum(2 if 100 * y > 120 * x else 1 if 100 * y == 120 * x else 0 for x, y in pairs)
        assert ranks.share_slower_than(20) == above / (2 * len(pairs))
        if ranks.share_slower_than(20) > 0.5:
            assert shift_ratio(baseline, recent) > 1.2 - 1e-12


# The t tests, against tables.


@pytest.mark.parametrize(
    ("t", "df", "p"),
    [(12.706, 1, 0.025), (1.886, 2, 0.10), (2.015, 5, 0.05), (2.228, 10, 0.025), (3.5, 30, 0.000738)],
)
def test_t_tail_matches_the_tables(t: float, df: int, p: float) -> None:
    assert t_upper_tail(t, df) == pytest.approx(p, rel=2e-3)
    assert t_upper_tail(-t, df) == pytest.approx(1 - p, rel=2e-3)


def test_one_sample_and_welch_confidence() -> None:
    values = [1.0, 2.0, 3.0, 4.0, 5.0]
    day = Daily(values[0], 1)
    for v in values[1:]:
        day.add(v)
    assert day.summary().variance == pytest.approx(statistics.variance(values))
    # t = (3 - 1) / (sqrt(2.5) / sqrt(5)) = 2.828 on 4 degrees of freedom: p = 0.0237.
    assert above_value(day.summary(), 1.0) == pytest.approx(1 - 0.0237, abs=1e-4)
    # Welch: means 3 and 1.5, variances 2.5 and 0.5 (n 5 and 4): t = 1.5 / sqrt(0.625) = 1.897 on
    # 0.625^2 / (0.5^2 / 4 + 0.125^2 / 3) = 5.77 degrees of freedom, rounded down.
    other = Summary(4, 1.5, 0.5 * 3)
    assert above_other(day.summary(), other) == pytest.approx(1 - t_upper_tail(1.5 / math.sqrt(0.625), 5))
    assert 0.05 < t_upper_tail(1.897, 5) < 0.10  # between the table's 2.015 and 1.476
    assert above_value(Summary(3, 5.0, 0.0), 4.0) == 1.0
    assert above_other(Summary(3, 5.0, 0.0), Summary(3, 5.0, 0.0)) == 0.5


# Duration regressions.


def test_a_sustained_slowdown_stays_open_against_the_held_baseline() -> None:
    durations = steady(100, 60) + steady(130, 200)
    fx = analyze_durations(rows(durations), {})
    insight = fx.insights[KEY]
    flags = opened_at(durations)
    first = flags.index(True)
    assert 60 < first < 100
    assert all(flags[first:])  # open to the end: 200 slow runs later
    assert (insight.status, insight.severity) == ("open", "warning")
    assert (insight.first_seen, insight.last_seen) == (
        T0 + timedelta(seconds=first),
        T0 + timedelta(seconds=259),
    )
    held = fx.states[KEY]
    assert held.regression_open
    assert (
        held.durations[: held.baseline_runs]
        == durations[first + 1 - 40 - held.baseline_runs : first + 1 - 40]
    )
    assert held.durations[held.baseline_runs :] == durations[-40:]
    evidence = insight.evidence
    assert evidence["baseline_median"] == 100.0
    assert evidence["recent_median"] == 130.0
    assert evidence["change"] == pytest.approx(0.3, abs=0.01)
    assert evidence["recent_runs"] == 40
    assert evidence["baseline_runs"] == held.baseline_runs >= settings.MIN_BASELINE_RUNS
    assert evidence["confidence"] == 1.0
    assert 0 < evidence["spread"] < 0.1
    assert insight.title == "build in vscode is 30% slower"
    assert insight.body == (
        f"Over its last 40 runs build in vscode took a median 130 ms against 100 ms over the "
        f"{held.baseline_runs} runs before it slowed down, about 30% slower where its runs usually vary "
        f"by {round(evidence['spread'] * 100)}% (confidence 100.0%)."
    )


def test_back_to_the_baseline_resolves_keeping_severity_and_learns_a_new_baseline() -> None:
    durations = steady(100, 60) + steady(160, 60) + steady(100, 40)
    fx = analyze_durations(rows(durations), {})
    insight = fx.insights[KEY]
    flags = opened_at(durations)
    assert flags[119] and not flags[-1]
    # Critical while 60 % slower; on its way back it was last open as a warning, which it keeps.
    assert (insight.status, insight.severity) == ("resolved", "warning")
    assert insight.title == "build in vscode is back to normal speed"
    assert insight.body.startswith("Over its last 40 runs build in vscode took a median 10")
    assert insight.body.endswith("ms, back within 5% of the 100 ms it took before it slowed down.")
    assert insight.evidence["baseline_median"] == 100.0
    # Learnt afresh from the resolution on: the runs since then have aged into a new baseline.
    resolved_at = flags.index(False, 100)
    assert resolved_at < 120 + 40
    state = fx.states[KEY]
    since = len(durations) - 1 - resolved_at
    assert (state.regression_open, state.baseline_runs, len(state.durations)) == (False, since, 40 + since)
    assert state.durations == durations[-40 - since :]


@pytest.mark.parametrize(
    ("after", "expected"),
    [(110, None), (111, ("open", "warning")), (150, ("open", "warning")), (151, ("open", "critical"))],
)
def test_minimum_effect_and_critical_boundaries(after: int, expected: tuple[str, str] | None) -> None:
    fx = analyze_durations(rows([100] * 60 + [after] * 60), {})
    got = fx.insights.get(KEY)
    assert (None if got is None else (got.status, got.severity)) == expected


def test_no_verdict_before_a_baseline_nor_on_zero_ms_runs() -> None:
    runs = settings.MIN_BASELINE_RUNS + settings.RECENT_RUNS
    assert analyze_durations(rows([100] * (runs - 41) + [300] * 40), {}).insights == {}
    assert KEY in analyze_durations(rows([100] * (runs - 40) + [300] * 40), {}).insights
    assert analyze_durations(rows([0] * 60 + [50] * 60), {}).insights == {}


def test_an_open_window_of_the_first_rule_is_judged_against_its_older_half() -> None:
    # What the migration leaves for a regression the first rule had open: 20 old runs held.
    legacy = {KEY: DurationState([100] * 20 + [130] * 20, baseline_runs=20, regression_open=True)}
    fx = analyze_durations(rows([130]), legacy)
    assert fx.insights[KEY].status == "open"
    assert (fx.insights[KEY].evidence["baseline_runs"], fx.insights[KEY].evidence["recent_runs"]) == (20, 21)
    fx = analyze_durations(rows([100] * 30), legacy)
    assert fx.insights[KEY].status == "resolved"


def upsert(table: dict[str, Insight], insight: Insight) -> None:
    """What insights_upsert does with an insight row."""
    before = table.get(insight.fingerprint)
    if before is None:
        table[insight.fingerprint] = insight
        return
    severity = before.severity if insight.status == "resolved" else insight.severity
    table[insight.fingerprint] = Insight(
        **{
            **insight.__dict__,
            "severity": severity,
            "first_seen": before.first_seen,
            "last_seen": max(before.last_seen, insight.last_seen),
        }
    )


def test_the_same_insights_and_state_whatever_the_batches() -> None:
    rng = random.Random(11)
    stream: list[tuple[uuid.UUID, str, str, int, datetime]] = []
    for n in range(12):
        user = uuid.UUID(int=n + 1)
        base = rng.uniform(100, 900)
        factors = [1.0] * 60 + [rng.choice((1.0, 1.2, 1.5))] * 80 + [1.0] * rng.randint(0, 60)
        stream += [
            (
                user,
                "terminal",
                "run",
                round(base * f * rng.lognormvariate(0, 0.25)),
                T0 + timedelta(seconds=i),
            )
            for i, f in enumerate(factors)
        ]
    stream.sort(key=lambda r: (r[4], r[0]))

    def run(batch_sizes: list[int]) -> tuple[dict[str, Insight], dict[SeriesKey, DurationState]]:
        table: dict[str, Insight] = {}
        states: dict[SeriesKey, DurationState] = {}
        i = 0
        while i < len(stream):
            size = batch_sizes[i % len(batch_sizes)]
            fx = analyze_durations(stream[i : i + size], states)
            states = {**states, **fx.states}
            for insight in fx.insights.values():
                upsert(table, insight)
            i += size
        return table, states

    whole = run([len(stream)])
    assert {i.status for i in whole[0].values()} >= {"open"}
    assert run([1]) == whole
    assert run([7, 300, 2, 41]) == whole


# Daily metric rules.

DAY = T0.date()


def entries(
    source: str, metric: str, values: list[float], day: int = 0
) -> list[tuple[datetime, str, dict[str, Any]]]:
    return [(T0 + timedelta(days=day, minutes=i), source, {metric: v}) for i, v in enumerate(values)]


def test_metric_samples() -> None:
    assert list(samples_of({"lcp": 1, "ok": True, "name": 3, "nested": {"x": 1}})) == [
        ("lcp", 1.0),
        ("name", 3.0),
    ]
    assert list(samples_of({"name": "lcp", "value": 2.5})) == [("lcp", 2.5)]


def test_a_threshold_needs_confidence_to_open_and_resolves_at_the_threshold() -> None:
    key = ("supabase", "latencyMs", DAY)
    # One sample has no spread; two far apart averaging 205 are no evidence of anything.
    assert analyze_metrics(entries("supabase", "latencyMs", [400]), {}).insights == {}
    assert analyze_metrics(entries("supabase", "latencyMs", [150, 260]), {}).insights == {}
    tight = [204.0, 206.0, 205.0, 203.0, 207.0, 205.0]
    fx = analyze_metrics(entries("supabase", "latencyMs", tight), {})
    insight = fx.insights[key]
    assert insight.status == "open"
    assert insight.evidence["average"] == 205.0
    assert insight.evidence["spread"] == pytest.approx(statistics.stdev(tight))
    assert insight.evidence["confidence"] > 0.99
    assert insight.body == (
        "Daily average latencyMs from supabase is 205 over 6 samples (standard deviation 1.41), "
        f"against a threshold of 200, with {insight.evidence['confidence']:.1%} confidence. "
        "Recommendation: add indexes for slow queries."
    )
    stored = {key: fx.days[key]}
    assert stored[key].alert_open
    # Below the confidence bar but above the threshold: still open (hysteresis), then resolved.
    fx = analyze_metrics(entries("supabase", "latencyMs", [190.0]), stored)
    assert fx.insights[key].status == "open"
    fx = analyze_metrics(entries("supabase", "latencyMs", [190.0, 150.0]), stored)
    assert fx.insights[key].status == "resolved"
    assert fx.days[key].samples == 8
    assert stored[key].samples == 6  # inputs are not mutated


def test_lcp_rise_is_judged_against_both_days_spread() -> None:
    key = ("vercel", "lcp", DAY + timedelta(days=1))
    before = [1900.0, 2100.0, 2000.0, 1950.0, 2050.0]
    noisy = entries("vercel", "lcp", before) + entries("vercel", "lcp", [1600.0, 3300.0], day=1)
    assert analyze_metrics(noisy, {}).insights == {}  # +22.5 % on average, but from two wild samples
    rise = [2480.0, 2520.0, 2500.0, 2490.0, 2510.0]
    steady_rise = entries("vercel", "lcp", before) + entries("vercel", "lcp", rise, day=1)
    insight = analyze_metrics(steady_rise, {}).insights[key]
    assert insight.status == "open"
    assert insight.evidence["change"] == 0.25
    assert (insight.evidence["previous_samples"], insight.evidence["samples"]) == (5, 5)
    assert "25% above the previous day's 2000 (5 samples)" in insight.body
    ten = [2180.0, 2200.0, 2220.0, 2190.0, 2210.0]
    small_rise = entries("vercel", "lcp", before) + entries("vercel", "lcp", ten, day=1)
    assert analyze_metrics(small_rise, {}).insights == {}  # +10 % exactly is not more than 10 %


def daily_alarms(days: int, samples: int, cv: float, factor: float, seed: int) -> float:
    """Share of simulated day pairs (LCP, lognormal samples) whose second day raises an alarm."""
    rng = random.Random(seed)
    sigma = math.sqrt(math.log(1 + cv * cv))
    raised = 0
    for _ in range(days):
        median = rng.uniform(1500, 3000)
        first = [median * rng.lognormvariate(0, sigma) for _ in range(samples)]
        second = [median * factor * rng.lognormvariate(0, sigma) for _ in range(samples)]
        fx = analyze_metrics(entries("client", "LCP", first) + entries("client", "LCP", second, day=1), {})
        raised += bool(fx.insights)
    return raised / days


def test_daily_lcp_on_simulated_days() -> None:
    # Lognormal samples with CV 0.3; the rule is judged again after every sample.
    assert daily_alarms(200, 48, 0.3, 1.0, seed=1) <= 0.02  # every half hour, no change
    assert daily_alarms(200, 96, 0.3, 1.3, seed=2) >= 0.95  # every quarter hour, 30 % slower
    assert daily_alarms(200, 96, 0.3, 1.2, seed=3) >= 0.80


def test_daily_threshold_on_simulated_days() -> None:
    rng = random.Random(4)
    sigma = math.sqrt(math.log(1 + 0.3**2))
    raised = {170: 0, 260: 0}
    for mean in raised:
        for _ in range(200):
            values = [mean * rng.lognormvariate(-(sigma**2) / 2, sigma) for _ in range(48)]
            raised[mean] += bool(analyze_metrics(entries("supabase", "avgLatencyMs", values), {}).insights)
    assert raised[170] <= 4  # 15 % under the 200 ms threshold: at most 2 % of days
    assert raised[260] >= 190  # 30 % over it: at least 95 %
