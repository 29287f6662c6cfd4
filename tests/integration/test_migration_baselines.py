"""The performance rule's migrations on existing state. 20261128000800: a regression the first
duration rule had open keeps its older half as the held baseline; the rollback leaves the 40-run
windows the first rule reads. 20261128001100: the rank statistics give way to log sums, which the
rule computes from the stored durations when a series next gets a run; the rollback brings the rank
columns back empty, which the rank rule fills the same way."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest

from consumers.durations import DurationState, analyze_durations
from floyo_pipeline.migrations import discover, migrate, migrate_down
from tests.support.analyzers import T0, Ev, consenting_users, insert_rows, process
from tests.support.pg import TestDatabase
from tests.support.service import make_users

VERSION = "20261128000800"
LOG_SUMS = "20261128001100"


def version_before(version: str = VERSION) -> str:
    versions = [m.version for m in discover()]
    return versions[versions.index(version) - 1]


async def migrate_up_to(admin: asyncpg.Connection, version: str, tmp_path: Path) -> None:
    """Apply the pending migrations up to `version` only (a folder holding just those)."""
    folder = tmp_path / "migrations"
    folder.mkdir()
    for m in discover():
        if m.version <= version:
            shutil.copy(m.path, folder / m.path.name)
    await migrate(admin, folder)


async def test_open_windows_get_their_older_half_as_baseline_and_the_rollback_trims(
    database: TestDatabase, admin: asyncpg.Connection, tmp_path: Path
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
    await migrate_up_to(admin, VERSION, tmp_path)
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


async def test_rank_statistics_give_way_to_log_sums_summed_at_the_next_run_and_back(
    database: TestDatabase, admin: asyncpg.Connection
) -> None:
    await migrate_down(admin, version_before(LOG_SUMS))
    quiet, regressed = await consenting_users(admin, 2)
    steady = [100 + i % 7 for i in range(100)]
    held = [100 + i % 7 for i in range(60)] + [140 + i % 5 for i in range(40)]
    # As the rank rule left them: 60 baseline runs and 40 recent ones, with their rank statistics.
    await admin.execute(
        """insert into floyo_pipeline.duration_windows
             (user_id, app_id, event_type, durations, baseline_runs, regression_open, last_at, rank_u2,
              rank_ties)
           values ($1, 'vscode', 'build', $3, 60, false, $5, 4811, 79350),
                  ($2, 'vscode', 'build', $4, 60, true, $5, 4800, 9000)""",
        quiet,
        regressed,
        steady,
        held,
        T0,
    )
    assert LOG_SUMS in {m.version for m in await migrate(admin)}
    stored = {
        r["user_id"]: dict(r) for r in await admin.fetch("select * from floyo_pipeline.duration_windows")
    }
    assert {u: (r["durations"], r["baseline_runs"], r["regression_open"]) for u, r in stored.items()} == {
        quiet: (steady, 60, False),
        regressed: (held, 60, True),
    }
    sums = ("baseline_log_sum", "baseline_log_squares", "recent_log_sum", "recent_log_squares")
    assert all(r[c] is None for r in stored.values() for c in sums)
    assert "rank_u2" not in stored[quiet] and "rank_ties" not in stored[quiet]
    with pytest.raises(asyncpg.CheckViolationError):
        await admin.execute(
            "update floyo_pipeline.duration_windows set baseline_log_sum = 1 where user_id = $1", quiet
        )

    # The next run of each series: the rule sums the stored durations, and the open regression is
    # still judged against its held baseline.
    await insert_rows(
        admin,
        [
            Ev(u, T0 + timedelta(minutes=1), "vscode", "build", duration=d)
            for u, d in ((quiet, 103), (regressed, 142))
        ],
    )
    await process(database, admin)
    pure = analyze_durations(
        [(u, "vscode", "build", d, T0 + timedelta(minutes=1)) for u, d in ((quiet, 103), (regressed, 142))],
        {
            (quiet, "vscode", "build"): DurationState(steady, 60),
            (regressed, "vscode", "build"): DurationState(held, 60, regression_open=True),
        },
    )
    after = {r["user_id"]: r for r in await admin.fetch("select * from floyo_pipeline.duration_windows")}
    for user in (quiet, regressed):
        state = pure.states[(user, "vscode", "build")]
        row = after[user]
        assert (row["durations"], row["baseline_runs"], row["regression_open"]) == (
            state.durations,
            state.baseline_runs,
            state.regression_open,
        )
        assert tuple(row[c] for c in sums) == state.log_sums
    assert after[regressed]["regression_open"] and after[regressed]["baseline_runs"] == 60
    [insight] = await admin.fetch("select status, evidence from public.insights")
    assert insight["status"] == "open" and insight["evidence"]["baseline_runs"] == 60

    # Rolled back: the rank columns return empty and the windows stay as they are.
    await migrate_down(admin, version_before(LOG_SUMS))
    rows = {r["user_id"]: dict(r) for r in await admin.fetch("select * from floyo_pipeline.duration_windows")}
    assert {u: (r["durations"], r["rank_u2"], r["rank_ties"]) for u, r in rows.items()} == {
        u: (after[u]["durations"], None, None) for u in (quiet, regressed)
    }
    assert all(c not in rows[quiet] for c in sums)
    await migrate(admin)
