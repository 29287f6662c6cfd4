"""The performance rules as pure functions: the duration rule's exact log sums and t statistic against
direct computation, its winsorizing, the t tests against tables, the held baseline, the insight rows,
batch-size independence and the daily metric rules."""

from __future__ import annotations

import math
import random
import statistics
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from consumers import settings
from consumers.durations import LOG_SCALE, DurationState, Series, SeriesKey, analyze_durations, log_units
from consumers.insights import Insight
from consumers.metric_rules import Daily, analyze_metrics, samples_of
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


# The duration rule's statistics, against direct computation.


def welch_t(baseline: list[int], recent: list[int]) -> float:
    """Welch's t of the recent mean log duration over the baseline's, from the values in floats."""
    b = [log_units(v) / LOG_SCALE for v in baseline]
    r = [log_units(v) / LOG_SCALE for v in recent]
    se = math.sqrt(statistics.variance(b) / len(b) + statistics.variance(r) / len(r))
    return (statistics.fmean(r) - statistics.fmean(b)) / se


def sums_of(values: list[int]) -> tuple[int, int]:
    return sum(log_units(v) for v in values), sum(log_units(v) ** 2 for v in values)


def test_log_units() -> None:
    assert (log_units(0), log_units(1), log_units(2)) == (0, 0, 693147)
    assert log_units(2**31 - 1) == 21487563  # the largest duration_ms: squares of 100 fit a bigint
    assert 100 * log_units(2**31 - 1) ** 2 < 2**63


def test_sums_stay_exact_and_the_t_statistic_matches_a_direct_computation() -> None:
    rng = random.Random(5)
    series = Series(DurationState([]))
    for i in range(600):
        # Steps up and back, and a few spikes and 0 ms runs for the winsorizing to pull in.
        level = (1.0, 1.4, 1.0, 0.8)[i // 150]
        duration = round(300 * level * rng.lognormvariate(0, 0.3))
        if i % 37 == 0:
            duration = rng.choice((0, duration * 20))
        series.push(duration)
        state = series.state()
        baseline, recent = state.durations[: state.baseline_runs], state.durations[state.baseline_runs :]
        assert state.log_sums == (*sums_of(baseline), *sums_of(recent))
        assert len(recent) <= settings.RECENT_RUNS and len(baseline) <= settings.BASELINE_RUNS
        if len(baseline) >= 2 and len(recent) >= 2:
            n, m = len(baseline), len(recent)
            excess = n * series.r_sum - m * series.b_sum
            assert series._t(excess, n, m) == pytest.approx(welch_t(baseline, recent), rel=1e-9)
    # Unsummed (as a row from before the sums were kept): the same series from there on.
    later = [round(300 * rng.lognormvariate(0, 0.3)) for _ in range(50)]
    summed, unsummed = (
        Series(series.state()),
        Series(DurationState(list(state.durations), state.baseline_runs)),
    )
    for d in later:
        assert summed.push(d) == unsummed.push(d)
    assert summed.state() == unsummed.state()


def winsor_bounds(values: list[int]) -> tuple[int, int]:
    """The durations a run joining these values is pulled in to (settings.WINSOR_*)."""
    units = [log_units(v) for v in values]
    mean = statistics.fmean(units)
    reach = max(
        settings.WINSOR_SPREADS * statistics.stdev(units), math.log(settings.WINSOR_MIN_RATIO) * LOG_SCALE
    )
    return round(math.exp((mean - reach) / LOG_SCALE)), round(math.exp((mean + reach) / LOG_SCALE))


def test_winsorizing_pulls_in_spikes_and_0_ms_runs_but_follows_a_real_slowdown() -> None:
    rng = random.Random(8)
    series = Series(DurationState([]))
    for _ in range(50):
        series.push(round(500 * rng.lognormvariate(0, 0.1)))
    _, top = winsor_bounds(series.runs[series.n :])
    series.push(500 * 40)  # a run 40 times slower counts as the top of the recent runs' range
    assert series.runs[-1] == top < 1100
    bottom, _ = winsor_bounds(series.runs[series.n :])
    series.push(0)
    assert series.runs[-1] == bottom > 200
    # Half as slow again is within reach whatever the spread: a real slowdown is kept as it is.
    slower = [round(750 * rng.lognormvariate(0, 0.05)) for _ in range(40)]
    for d in slower:
        series.push(d)
    assert series.runs[-40:] == slower
    # A run joins the baseline pulled in to the baseline's bounds (the spike was already).
    assert max(series.runs[: series.n]) < 1100 and min(series.runs[: series.n]) > 200
    # The first runs of a series have nothing to be judged against.
    fresh = Series(DurationState([]))
    for d in [500, 40_000, 0]:
        fresh.push(d)
    assert fresh.runs == [500, 40_000, 0]


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


def test_back_to_the_baseline_resolves_keeping_severity_and_starts_afresh() -> None:
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
    # Both samples are learnt afresh from the runs after the resolution.
    resolved_at = flags.index(False, 100)
    assert resolved_at < 120 + 40
    state = fx.states[KEY]
    since = len(durations) - 1 - resolved_at
    assert (state.regression_open, state.baseline_runs, state.durations) == (False, 0, durations[-since:])


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
    fx = analyze_durations(rows([100] * 40), legacy)
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
