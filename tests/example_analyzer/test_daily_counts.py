"""The example analyzer, added by its own files only: its rule as a pure function, then the real
service running it beside the default analyzers, and retention, validate-schema and the test helpers
finding its table through its `tables` declaration."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import asyncpg

from floyo_pipeline.composition import build_consumers
from floyo_pipeline.migrations import discover, migrate, migrate_down
from floyo_pipeline.retention import run_retention
from floyo_pipeline.schema_check import find_drift
from tests.example_analyzer.daily_counts import Day, count_days
from tests.support.analyzers import (
    Ev,
    consenting_users,
    insert_rows,
    process,
    reset_outputs,
    state_snapshot,
    state_tables,
    users_stored,
)
from tests.support.pg import TestDatabase

HERE = Path(__file__).parent
FACTORY = "tests.example_analyzer.daily_counts:with_defaults"
TABLE = "floyo_pipeline.example_daily_counts"


def test_count_days_counts_per_user_and_utc_day() -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    evening = datetime(2026, 3, 1, 23, 30, tzinfo=timezone(timedelta(hours=-5)))  # 04:30 UTC on the 2nd
    rows = [
        (a, datetime(2026, 3, 2, 9, 0, tzinfo=UTC)),
        (a, evening),
        (a, datetime(2026, 3, 1, 22, 0, tzinfo=UTC)),
        (b, datetime(2026, 3, 2, 1, 0, tzinfo=UTC)),
    ]
    assert count_days(rows) == {
        (a, date(2026, 3, 2)): Day(2, datetime(2026, 3, 2, 9, 0, tzinfo=UTC)),
        (a, date(2026, 3, 1)): Day(1, datetime(2026, 3, 1, 22, 0, tzinfo=UTC)),
        (b, date(2026, 3, 2)): Day(1, datetime(2026, 3, 2, 1, 0, tzinfo=UTC)),
    }
    assert count_days([]) == {}


async def stored_days(admin: asyncpg.Connection) -> set[tuple[uuid.UUID, date, int]]:
    rows = await admin.fetch(f"select user_id, day, events from {TABLE}")
    return {(r["user_id"], r["day"], r["events"]) for r in rows}


async def test_an_analyzer_added_by_its_own_files_alone(
    database: TestDatabase, admin: asyncpg.Connection
) -> None:
    # As `FLOYO_CONSUMERS=... floyo-pipeline run | retention | validate-schema` load them.
    consumers = build_consumers(FACTORY)
    assert [c.name for c in consumers][-1] == "example_daily_counts"
    assert [t.name for t in state_tables(consumers)][-1] == TABLE

    # validate-schema expects the declared table: drift until its migration is applied, clean after.
    drift, _ = await find_drift(admin, consumers)
    assert drift == [f"{TABLE}: table missing"]
    applied = await migrate(admin, folder=HERE / "migrations")
    assert [m.name for m in applied] == ["example_daily_counts"]
    drift, checked = await find_drift(admin, consumers)
    assert drift == []
    _, without = await find_drift(admin, consumers[:-1])
    assert checked["private tables"] == without["private tables"] + 1

    # Two users (retention 7 and 14 days), with events on three days: about 2, 11 and 21 days old.
    [week] = await consenting_users(admin, 1, retention_days=7)
    [fortnight] = await consenting_users(admin, 1)
    now: datetime = await admin.fetchval("select now()")
    noon = now.astimezone(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    ages = {1: 3, 10: 2, 20: 1}  # days before yesterday noon (UTC) -> events that day
    rows = [
        Ev(user, noon - timedelta(days=age + 1, minutes=i))
        for user in (week, fortnight)
        for age, n in ages.items()
        for i in range(n)
    ]
    await insert_rows(admin, sorted(rows, key=lambda r: r.occurred_at))
    await process(database, admin, consumers)

    days = {age: (noon - timedelta(days=age + 1)).date() for age in ages}
    everything = {(user, days[age], n) for user in (week, fortnight) for age, n in ages.items()}
    assert await stored_days(admin) == everything
    state = await state_snapshot(admin, consumers)
    assert len(state[TABLE]) == 6
    assert await users_stored(admin, consumers) >= {week, fortnight}

    # Retention ages the table by its declared column, per user: a dry run, then the real one.
    service = await asyncpg.connect(database.service_url)
    try:
        would = await run_retention(service, consumers, dry_run=True)
        assert list(would.items()) == [
            ("telemetry_events", 4),
            ("patterns", 0),
            ("relationships", 0),
            ("insights", 0),
            ("file_pattern_state", 0),
            ("app_workflow_state", 0),
            ("duration_windows", 0),
            ("example_daily_counts", 3),
        ]
        assert await stored_days(admin) == everything
        assert await run_retention(service, consumers, dry_run=False) == would
    finally:
        await service.close()
    kept = {(week, days[1], 3), (fortnight, days[1], 3), (fortnight, days[10], 2)}
    assert await stored_days(admin) == kept

    # The helpers empty it and replay the analyzers: the same counts from the telemetry retention kept.
    await reset_outputs(admin, consumers)
    assert await stored_days(admin) == set()
    await process(database, admin, consumers)
    assert await stored_days(admin) == kept

    # Its rollback undoes its migration, back to the project's newest.
    undone = await migrate_down(
        admin, discover()[-1].version, folder=HERE / "migrations", rollbacks=HERE / "rollbacks"
    )
    assert [m.name for m in undone] == ["example_daily_counts"]
    assert await admin.fetchval("select to_regclass($1)", TABLE) is None
