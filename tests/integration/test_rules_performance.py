"""performance rules on real Postgres through the running engine: duration regressions and the
metrics_log daily rules, with exact insight rows."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from consumers.durations import analyze_durations
from tests.support.analyzers import (
    T0,
    Ev,
    consenting_users,
    insert_metrics,
    insert_rows,
    process,
    table_rows,
)
from tests.support.pg import TestDatabase


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def runs(
    user: uuid.UUID, durations: list[int], start: int = 0, event_type: str = "action_completed"
) -> list[Ev]:
    return [
        Ev(user, start + 10 * i, app="vscode", event_type=event_type, duration=d)
        for i, d in enumerate(durations)
    ]


async def insights(admin: asyncpg.Connection) -> dict[str, dict[str, Any]]:
    return {r["fingerprint"]: r for r in await table_rows(admin, "insights")}


def steady(median: int, n: int) -> list[int]:
    """Durations within 5 ms of `median`, in a fixed shuffled order."""
    return [median + (i * 7) % 11 - 5 for i in range(n)]


def expected(user: uuid.UUID, durations: list[int]) -> dict[str, Any]:
    """The insight row the pure rule gives for the whole series in one call."""
    rows = [(user, "vscode", "action_completed", d, at(10 * i)) for i, d in enumerate(durations)]
    insight = analyze_durations(rows, {}).insights[(user, "vscode", "action_completed")]
    return {"user_id": user, **{k: v for k, v in insight.as_json().items() if k != "user_id"}} | {
        "first_seen": insight.first_seen,
        "last_seen": insight.last_seen,
    }


async def test_regressions_open_against_a_held_baseline_and_stay_open(
    database: TestDatabase, admin: asyncpg.Connection
) -> None:
    ten, eleven, thirty, fiftyone, short = await consenting_users(admin, 5)
    series = {
        ten: [100] * 60 + [110] * 60,  # exactly 10 % slower: not a regression
        eleven: [100] * 60 + [111] * 60,
        thirty: steady(100, 60) + steady(130, 100),
        fiftyone: [100] * 60 + [151] * 60,
        short: [100] * 40 + [200] * 39,  # 79 runs: no verdict before 40 baseline + 40 recent
    }
    await insert_rows(admin, [ev for user, durations in series.items() for ev in runs(user, durations)])
    await process(database, admin, batch_size=7)
    got = await insights(admin)
    assert set(got) == {
        f"performance_regression:{u}:vscode:action_completed" for u in (eleven, thirty, fiftyone)
    }
    for user in (eleven, thirty, fiftyone):
        assert got[f"performance_regression:{user}:vscode:action_completed"] == expected(user, series[user])
    row = got[f"performance_regression:{thirty}:vscode:action_completed"]
    # Still open 100 runs into the slowdown (the first rule had forgotten it after 40).
    assert (row["status"], row["severity"], row["title"]) == (
        "open",
        "warning",
        "action_completed in vscode is 30% slower",
    )
    evidence = row["evidence"]
    assert (evidence["baseline_median"], evidence["recent_median"], evidence["recent_runs"]) == (
        100.0,
        130.0,
        40,
    )
    assert evidence["change"] == pytest.approx(0.3, abs=0.01)
    assert evidence["baseline_runs"] >= 40 and evidence["confidence"] == 1.0
    assert at(600) < row["first_seen"] < at(1000) and row["last_seen"] == at(1590)
    critical = got[f"performance_regression:{fiftyone}:vscode:action_completed"]
    assert critical["severity"] == "critical"
    state = {
        r["user_id"]: (r["regression_open"], r["baseline_runs"], len(r["durations"]))
        for r in await admin.fetch("select * from floyo_pipeline.duration_windows")
    }
    assert state[thirty] == (True, evidence["baseline_runs"], evidence["baseline_runs"] + 40)
    assert state[ten] == (False, 60, 100) and state[short] == (False, 39, 79)


async def test_a_regression_resolves_when_durations_are_back_at_the_baseline(
    database: TestDatabase, admin: asyncpg.Connection
) -> None:
    [u] = await consenting_users(admin, 1)
    slow = steady(100, 60) + steady(130, 60)
    await insert_rows(admin, runs(u, slow))
    await process(database, admin, batch_size=5)
    [row] = (await insights(admin)).values()
    assert row["status"] == "open"
    opened = row["first_seen"]
    await insert_rows(admin, runs(u, steady(100, 40), start=1200))
    await process(database, admin, batch_size=5)
    [row] = (await insights(admin)).values()
    assert row == expected(u, slow + steady(100, 40))
    assert (row["status"], row["severity"], row["first_seen"]) == ("resolved", "warning", opened)
    assert row["title"] == "action_completed in vscode is back to normal speed"
    assert row["evidence"]["baseline_median"] == 100.0
    open_flag, baseline_runs = await admin.fetchrow(
        "select regression_open, baseline_runs from floyo_pipeline.duration_windows"
    )
    assert open_flag is False and baseline_runs < 40  # a new baseline is being learnt


DAY1 = datetime(2026, 1, 1, 12, tzinfo=UTC)
DAY2 = DAY1 + timedelta(days=1)


def spaced(
    day: datetime, source: str, metric: str, values: list[float]
) -> list[tuple[datetime, str, dict[str, Any]]]:
    return [(day + timedelta(minutes=10 * i), source, {metric: v}) for i, v in enumerate(values)]


async def test_lcp_rise_judged_against_each_days_spread(
    database: TestDatabase, admin: asyncpg.Connection
) -> None:
    day1 = [1900.0, 2100.0, 2000.0, 1950.0, 2050.0]
    await insert_metrics(
        admin,
        spaced(DAY1, "vercel", "lcp", day1)
        + spaced(DAY1, "client", "LCP", day1)
        + spaced(DAY1, "telemetry", "lcp", day1)
        + spaced(DAY2, "vercel", "lcp", [2180.0, 2200.0, 2220.0, 2190.0, 2210.0])  # +10 %: nothing
        + spaced(DAY2, "client", "LCP", [2480.0, 2520.0, 2500.0, 2490.0, 2510.0])  # +25 %, steady: open
        + spaced(DAY2, "telemetry", "lcp", [1500.0, 3500.0, 1600.0, 3400.0, 2500.0])  # +25 %, wild: no
        + spaced(DAY2, "ci", "lcp", [9000.0] * 5)  # not an LCP source
        + [(DAY2 - timedelta(hours=13), "pipeline", {"name": "lcp", "value": 1})],  # name/value form
    )
    await process(database, admin)
    got = await insights(admin)
    assert list(got) == ["metrics:lcp_regression:client:LCP:2026-01-02"]
    row = got["metrics:lcp_regression:client:LCP:2026-01-02"]
    confidence = row["evidence"]["confidence"]
    assert confidence >= 0.999
    assert row == {
        "user_id": None,
        "kind": "lcp_regression",
        "severity": "warning",
        "status": "open",
        "title": "Largest Contentful Paint rose on 2026-01-02 (client LCP)",
        "body": "Daily average LCP from client is 2500 over 5 samples (standard deviation 15.8), 25% above "
        f"the previous day's 2000 (5 samples), with {confidence:.1%} confidence. Recommendation: enable "
        "image compression and optimized images.",
        "evidence": {
            "source": "client",
            "metric": "LCP",
            "day": "2026-01-02",
            "average": 2500.0,
            "samples": 5,
            "spread": pytest.approx(15.811, abs=1e-3),
            "threshold": 10,
            "confidence": confidence,
            "previous_average": 2000.0,
            "previous_samples": 5,
            "previous_spread": pytest.approx(79.057, abs=1e-3),
            "change": 0.25,
        },
        "fingerprint": "metrics:lcp_regression:client:LCP:2026-01-02",
        "first_seen": DAY2 + timedelta(minutes=40),
        "last_seen": DAY2 + timedelta(minutes=40),
    }
    daily = {
        (r["source"], r["metric"], r["day"].isoformat()): (r["total"], r["samples"], round(r["m2"], 6))
        for r in await admin.fetch("select * from floyo_pipeline.metric_daily")
        if r["source"] in ("client", "pipeline")
    }
    assert daily == {
        ("client", "LCP", "2026-01-01"): (10000.0, 5, 25000.0),
        ("client", "LCP", "2026-01-02"): (12500.0, 5, 1000.0),
        ("pipeline", "lcp", "2026-01-01"): (1.0, 1, 0.0),
    }
    # Late samples for the previous day lift its average; the fifth brings it to 2400, and day 2 is
    # no longer more than 5 % above it.
    late = DAY1 + timedelta(hours=5)
    await insert_metrics(admin, spaced(late, "client", "LCP", [2800.0] * 5))
    await process(database, admin)
    row = (await insights(admin))["metrics:lcp_regression:client:LCP:2026-01-02"]
    assert (row["status"], row["first_seen"], row["last_seen"]) == (
        "resolved",
        DAY2 + timedelta(minutes=40),
        DAY2 + timedelta(minutes=40),  # the latest event time behind it is still day 2's
    )
    assert (row["evidence"]["previous_average"], row["evidence"]["previous_samples"]) == (2400.0, 10)


async def test_threshold_rules_need_confidence_and_resolve_at_the_threshold(
    database: TestDatabase, admin: asyncpg.Connection
) -> None:
    t = DAY1
    await insert_metrics(
        admin,
        spaced(t, "supabase", "latencyMs", [200.0] * 5)  # at the threshold: nothing
        + spaced(t, "supabase", "avgLatencyMs", [205.0, 206.0, 205.0, 206.0, 205.0])
        + spaced(t, "supabase", "p99", [150.0, 260.0, 140.0, 270.0, 205.0])  # not a rule's metric
        + spaced(t, "expo", "bundleMB", [30.0] * 5)
        + spaced(t + timedelta(days=1), "expo", "bundleMB", [30.5] * 5)
        + spaced(t + timedelta(days=1), "ci", "queueLength", [3.0, 9.0, 1.0, 8.0, 2.0])  # 4.6: too wild
        + spaced(t + timedelta(days=2), "ci", "queueLength", [4.0, 5.0, 4.0, 5.0, 4.0, 5.0])
        + spaced(t + timedelta(days=1), "vercel", "bundleMB", [99.0] * 5),  # rule is for expo only
    )
    await process(database, admin, batch_size=2)
    got = await insights(admin)
    assert {fp: (r["kind"], r["status"], r["evidence"]["average"]) for fp, r in got.items()} == {
        "metrics:slow_queries:supabase:avgLatencyMs:2026-01-01": ("slow_queries", "open", 205.4),
        "metrics:bundle_size:expo:bundleMB:2026-01-02": ("bundle_size", "open", 30.5),
        "metrics:ci_queue:ci:queueLength:2026-01-03": ("ci_queue", "open", 4.5),
    }
    recommendations = {r["kind"]: r["body"].split("Recommendation: ")[1] for r in got.values()}
    assert recommendations == {
        "slow_queries": "add indexes for slow queries.",
        "bundle_size": "optimize the bundle.",
        "ci_queue": "throttle workflow concurrency.",
    }
    # Faster samples: the first leaves the average above 200 (still open, though no longer with
    # 99.9 % confidence), the second brings it to 199.6: resolved.
    later = t + timedelta(hours=2)
    await insert_metrics(admin, spaced(later, "supabase", "avgLatencyMs", [190.0, 180.0]))
    await process(database, admin)
    row = (await insights(admin))["metrics:slow_queries:supabase:avgLatencyMs:2026-01-01"]
    assert (row["status"], row["evidence"]["samples"]) == ("resolved", 7)
    assert row["evidence"]["average"] == pytest.approx(1397 / 7)
    assert (row["first_seen"], row["last_seen"]) == (t + timedelta(minutes=40), later + timedelta(minutes=10))
