"""performance rules on real Postgres through the running engine: duration regressions and the
metrics_log daily rules, with exact insight rows."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from tests.analyzer_support import (
    T0,
    Ev,
    consenting_users,
    insert_metrics,
    insert_rows,
    process,
    table_rows,
)
from tests.pg import TestDatabase


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


async def test_regression_above_ten_percent_opens_warning_or_critical(
    database: TestDatabase, admin: asyncpg.Connection
) -> None:
    ten, eleven, fifty, fiftyone, short = await consenting_users(admin, 5)
    rows = runs(ten, [100] * 20 + [110] * 20)
    rows += runs(eleven, [100] * 20 + [111] * 20)
    rows += runs(fifty, [100] * 20 + [150] * 20)
    rows += runs(fiftyone, [100] * 20 + [151] * 20)
    rows += runs(short, [100] * 20 + [200] * 19)  # 39 durations: no comparison yet
    await insert_rows(admin, rows)
    await process(database, admin, batch_size=7)
    got = await insights(admin)
    assert set(got) == {
        f"performance_regression:{u}:vscode:action_completed" for u in (eleven, fifty, fiftyone)
    }
    row = got[f"performance_regression:{eleven}:vscode:action_completed"]
    assert row == {
        "user_id": eleven,
        "kind": "performance_regression",
        "severity": "warning",
        "status": "open",
        "title": "action_completed in vscode is 11% slower",
        "body": "The median duration of action_completed in vscode rose from 100 ms to 111 ms over the "
        "last 40 runs.",
        "evidence": {
            "app_id": "vscode",
            "event_type": "action_completed",
            "old_median": 100.0,
            "new_median": 111.0,
            "change": 0.11,
        },
        "fingerprint": f"performance_regression:{eleven}:vscode:action_completed",
        "first_seen": at(390),
        "last_seen": at(390),
    }
    assert got[f"performance_regression:{fifty}:vscode:action_completed"]["severity"] == "warning"
    critical = got[f"performance_regression:{fiftyone}:vscode:action_completed"]
    assert (critical["severity"], critical["evidence"]["change"]) == ("critical", 0.51)
    windows = await admin.fetch(
        "select user_id, array_length(durations, 1) as n from floyo_pipeline.duration_windows"
    )
    assert {(r["user_id"], r["n"]) for r in windows} == {
        (ten, 40),
        (eleven, 40),
        (fifty, 40),
        (fiftyone, 40),
        (short, 39),
    }


async def test_regression_resolves_when_back_within_ten_percent(
    database: TestDatabase, admin: asyncpg.Connection
) -> None:
    [u] = await consenting_users(admin, 1)
    await insert_rows(admin, runs(u, [100] * 20 + [130] * 20 + [100] * 9))
    await process(database, admin, batch_size=5)
    [row] = (await insights(admin)).values()
    assert (row["status"], row["severity"], row["evidence"]["new_median"]) == ("open", "warning", 130.0)
    assert (row["first_seen"], row["last_seen"]) == (at(390), at(480))
    # The tenth run back at 100 ms evens the halves out: resolved, keeping its severity.
    await insert_rows(admin, runs(u, [100] * 3, start=490))
    await process(database, admin, batch_size=5)
    [row] = (await insights(admin)).values()
    assert row["status"] == "resolved"
    assert row["severity"] == "warning"
    assert row["evidence"] == {
        "app_id": "vscode",
        "event_type": "action_completed",
        "old_median": 115.0,
        "new_median": 115.0,
        "change": 0.0,
    }
    assert (row["first_seen"], row["last_seen"]) == (at(390), at(490))
    open_flag = await admin.fetchval("select regression_open from floyo_pipeline.duration_windows")
    assert open_flag is False


DAY1 = datetime(2026, 1, 1, 12, tzinfo=UTC)
DAY2 = DAY1 + timedelta(days=1)


async def test_lcp_more_than_ten_percent_above_previous_day(
    database: TestDatabase, admin: asyncpg.Connection
) -> None:
    await insert_metrics(
        admin,
        [
            (DAY1, "vercel", {"lcp": 1900}),
            (DAY1 + timedelta(hours=1), "vercel", {"lcp": 2100}),
            (DAY1, "client", {"LCP": 2000, "cls": 0.1, "ok": True}),
            (DAY2, "vercel", {"lcp": 2200}),  # +10 %: nothing
            (DAY2, "client", {"LCP": 2220}),  # +11 %: open
            (DAY2, "ci", {"lcp": 9000}),  # not an LCP source
            (DAY2 - timedelta(hours=13), "pipeline", {"name": "lcp", "value": 1}),  # name/value form
        ],
    )
    await process(database, admin)
    got = await insights(admin)
    assert list(got) == ["metrics:lcp_regression:client:LCP:2026-01-02"]
    row = got["metrics:lcp_regression:client:LCP:2026-01-02"]
    assert row == {
        "user_id": None,
        "kind": "lcp_regression",
        "severity": "warning",
        "status": "open",
        "title": "Largest Contentful Paint rose on 2026-01-02 (client LCP)",
        "body": "Daily average LCP from client is 2220. Recommendation: enable image compression and "
        "optimized images.",
        "evidence": {
            "source": "client",
            "metric": "LCP",
            "day": "2026-01-02",
            "average": 2220.0,
            "samples": 1,
            "threshold": 10,
            "previous_average": 2000.0,
            "change": 0.11,
        },
        "fingerprint": "metrics:lcp_regression:client:LCP:2026-01-02",
        "first_seen": DAY2,
        "last_seen": DAY2,
    }
    daily = {
        (r["source"], r["metric"], r["day"].isoformat()): (r["total"], r["samples"])
        for r in await admin.fetch("select * from floyo_pipeline.metric_daily")
    }
    assert daily == {
        ("vercel", "lcp", "2026-01-01"): (4000.0, 2),
        ("client", "LCP", "2026-01-01"): (2000.0, 1),
        ("client", "cls", "2026-01-01"): (0.1, 1),
        ("vercel", "lcp", "2026-01-02"): (2200.0, 1),
        ("client", "LCP", "2026-01-02"): (2220.0, 1),
        ("ci", "lcp", "2026-01-02"): (9000.0, 1),
        ("pipeline", "lcp", "2026-01-01"): (1.0, 1),
    }
    # A late sample for the previous day lifts its average to 2200: day 2 is no longer 10 % above it.
    late = DAY1 + timedelta(hours=5)
    await insert_metrics(admin, [(late, "client", {"LCP": 2400})])
    await process(database, admin)
    row = (await insights(admin))["metrics:lcp_regression:client:LCP:2026-01-02"]
    assert (row["status"], row["first_seen"], row["last_seen"]) == ("resolved", DAY2, DAY2)
    assert row["evidence"]["previous_average"] == 2200.0


async def test_threshold_rules_open_above_and_resolve_below(
    database: TestDatabase, admin: asyncpg.Connection
) -> None:
    t = DAY1
    await insert_metrics(
        admin,
        [
            (t, "supabase", {"latencyMs": 200}),  # at the threshold: nothing
            (t, "supabase", {"avgLatencyMs": 201}),
            (t, "expo", {"bundleMB": 30}),
            (t + timedelta(days=1), "expo", {"bundleMB": 30.5}),
            (t, "ci", {"queueLength": 3}),
            (t + timedelta(days=1), "ci", {"queueLength": 4}),
            (t + timedelta(days=1), "vercel", {"bundleMB": 99}),  # rule is for expo only
        ],
    )
    await process(database, admin, batch_size=2)
    got = await insights(admin)
    assert {fp: (r["kind"], r["status"], r["evidence"]["average"]) for fp, r in got.items()} == {
        "metrics:slow_queries:supabase:avgLatencyMs:2026-01-01": ("slow_queries", "open", 201.0),
        "metrics:bundle_size:expo:bundleMB:2026-01-02": ("bundle_size", "open", 30.5),
        "metrics:ci_queue:ci:queueLength:2026-01-02": ("ci_queue", "open", 4.0),
    }
    recommendations = {r["kind"]: r["body"].split("Recommendation: ")[1] for r in got.values()}
    assert recommendations == {
        "slow_queries": "add indexes for slow queries.",
        "bundle_size": "optimize the bundle.",
        "ci_queue": "throttle workflow concurrency.",
    }
    # The first fast sample brings the day's average to (201 + 99) / 2 = 150: resolved.
    later = t + timedelta(hours=2)
    await insert_metrics(
        admin, [(later, "supabase", {"avgLatencyMs": 99}), (later, "supabase", {"avgLatencyMs": 100})]
    )
    await process(database, admin)
    row = (await insights(admin))["metrics:slow_queries:supabase:avgLatencyMs:2026-01-01"]
    assert (row["status"], row["evidence"]["samples"], row["evidence"]["average"]) == ("resolved", 2, 150.0)
    assert (row["first_seen"], row["last_seen"]) == (t, later)
