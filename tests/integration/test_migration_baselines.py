"""Migration 20261128000800 on existing state: a regression the first duration rule had open keeps its
older half as the held baseline; the rollback leaves the 40-run windows the first rule reads."""

from __future__ import annotations

import asyncpg

from floyo_pipeline.migrations import discover, migrate, migrate_down
from tests.support.pg import TestDatabase
from tests.support.service import make_users

VERSION = "20261128000800"


def version_before() -> str:
    versions = [m.version for m in discover()]
    return versions[versions.index(VERSION) - 1]


async def test_open_windows_get_their_older_half_as_baseline_and_the_rollback_trims(
    database: TestDatabase, admin: asyncpg.Connection
) -> None:
    await migrate_down(admin, version_before())
    quiet, regressed = await make_users(admin, 2)
    await admin.execute(
        """insert into floyo_pipeline.duration_windows
             (user_id, app_id, event_type, durations, regression_open, last_at)
           values ($1, 'vscode', 'build', $3, false, now()), ($2, 'vscode', 'build', $4, true, now())""",
        quiet,
        regressed,
        [100] * 40,
        [100] * 20 + [130] * 20,
    )
    await admin.execute(
        "insert into floyo_pipeline.metric_daily (source, metric, day, total, samples) "
        "values ('ci', 'queueLength', '2026-01-01', 8, 2)"
    )
    assert VERSION in {m.version for m in await migrate(admin)}
    rows = {
        r["user_id"]: (r["baseline_runs"], r["rank_u2"], r["rank_ties"])
        for r in await admin.fetch("select * from floyo_pipeline.duration_windows")
    }
    assert rows == {quiet: (0, None, None), regressed: (20, None, None)}
    assert await admin.fetchval("select m2 from floyo_pipeline.metric_daily") == 0.0

    # Rolled back after the new rule kept 100 runs: the first rule gets its newest 40.
    await admin.execute(
        "update floyo_pipeline.duration_windows set durations = $2, baseline_runs = 60 where user_id = $1",
        quiet,
        list(range(100)),
    )
    await migrate_down(admin, version_before())
    windows = {
        r["user_id"]: list(r["durations"])
        for r in await admin.fetch("select user_id, durations from floyo_pipeline.duration_windows")
    }
    assert windows == {quiet: list(range(60, 100)), regressed: [100] * 20 + [130] * 20}
    columns = await admin.fetch(
        "select column_name from information_schema.columns where table_schema = 'floyo_pipeline' "
        "and column_name in ('baseline_runs', 'rank_u2', 'rank_ties', 'm2')"
    )
    assert columns == []
    await migrate(admin)
