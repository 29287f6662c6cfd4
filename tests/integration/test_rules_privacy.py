"""The privacy gate: no consent, apps not allow-listed or scoped `none`, signals switched off."""

from __future__ import annotations

import uuid

import asyncpg

from consumers.privacy import analyzable
from floyo_pipeline.api import BatchContext, TelemetryEvent
from floyo_pipeline.metrics import REGISTRY
from tests.support.analyzers import T0, Ev, consenting_users, insert_rows, process, users_stored
from tests.support.clients import as_user
from tests.support.pg import TestDatabase, connection
from tests.support.service import make_users

CONSUMERS = ("file_patterns", "app_workflows", "performance")
REASONS = ("skipped_consent", "skipped_app", "skipped_signal", "processed")


def counters() -> dict[tuple[str, str], float]:
    return {
        (c, r): REGISTRY.get_sample_value(
            "floyo_pipeline_events_total", {"stream": "telemetry_events", "consumer": c, "outcome": r}
        )
        or 0.0
        for c in CONSUMERS
        for r in REASONS
    }


async def test_gate_skips_and_counts_by_reason(database: TestDatabase, admin: asyncpg.Connection) -> None:
    [ok] = await consenting_users(admin, 1, apps=["vscode"])
    [no_prefs, refused, paused] = await make_users(admin, 3)
    await admin.execute(
        """insert into public.privacy_prefs (user_id, consent_given, monitoring_enabled)
           values ($1, false, true), ($2, true, false)""",
        refused,
        paused,
    )
    await admin.execute(
        """insert into public.app_allowlist (user_id, app_id, enabled, scope) values
           ($1, 'slack', true, 'none'), ($1, 'excel', false, 'metadata_plus_usage'),
           ($2, 'vscode', true, 'metadata_only'), ($3, 'vscode', true, 'metadata_only')""",
        ok,
        refused,
        paused,
    )
    await admin.execute(
        """insert into public.signal_toggles (user_id, signal_key, enabled)
           values ($1, 'file_modified', false), ($1, 'file_opened', true)""",
        ok,
    )
    rows = [
        Ev(ok, 0, app="vscode", path="/a.py", duration=5),
        Ev(ok, 10, app="slack", path="/b.py", duration=5),  # scope none
        Ev(ok, 20, app="excel", path="/c.py"),  # allow-listed but disabled
        Ev(ok, 30, app="jira", path="/d.py"),  # not allow-listed
        Ev(ok, 40, app="vscode", event_type="file_modified", path="/e.py", duration=5),  # signal off
        Ev(ok, 50, app="vscode", event_type="file_created", path="/f.py"),
    ]
    for user in (no_prefs, refused, paused):
        rows += [Ev(user, 10 * i, app="vscode", path=f"/{i}.py", duration=7) for i in range(3)]
    await insert_rows(admin, rows)
    before = counters()
    await process(database, admin)
    after = counters()
    moved = {k: after[k] - before[k] for k in after if after[k] != before[k]}
    assert moved == {
        ("file_patterns", "skipped_consent"): 9,
        ("file_patterns", "skipped_app"): 3,
        ("file_patterns", "skipped_signal"): 1,
        ("file_patterns", "processed"): 2,
        ("app_workflows", "skipped_consent"): 9,
        ("app_workflows", "skipped_app"): 3,
        ("app_workflows", "skipped_signal"): 1,
        ("app_workflows", "processed"): 2,
        # performance looks only at rows with a duration; the others count as processed.
        ("performance", "skipped_consent"): 9,
        ("performance", "skipped_app"): 1,
        ("performance", "skipped_signal"): 1,
        ("performance", "processed"): 4,
    }
    assert await users_stored(admin) == {ok}
    patterns = await admin.fetch("select file_extension, count from public.patterns")
    assert [(r["file_extension"], r["count"]) for r in patterns] == [("py", 2)]
    relationships = await admin.fetch("select source, target, relation_type from public.relationships")
    assert [tuple(r) for r in relationships] == []  # /a.py and /f.py are 50 s apart

    # Consent given later applies to rows processed after it commits, not to the skipped ones.
    await admin.execute("update public.privacy_prefs set consent_given = true where user_id = $1", refused)
    await insert_rows(admin, [Ev(refused, 100, app="vscode", path="/late.sql")])
    await process(database, admin)
    assert await users_stored(admin) == {ok, refused}
    late = await admin.fetch("select file_extension, count from public.patterns where user_id = $1", refused)
    assert [(r["file_extension"], r["count"]) for r in late] == [("sql", 1)]


async def copies(admin: asyncpg.Connection, user: object) -> tuple[object, list[str], list[str]]:
    """The pipeline's copy of one user's settings: (monitored, retention days), apps, signals off."""
    prefs = await admin.fetchrow(
        "select monitored, data_retention_days from floyo_pipeline.user_settings where user_id = $1", user
    )
    apps = await admin.fetch(
        "select app_id from floyo_pipeline.user_apps where user_id = $1 order by 1", user
    )
    off = await admin.fetch(
        "select signal_key from floyo_pipeline.user_signals_off where user_id = $1 order by 1", user
    )
    return (tuple(prefs) if prefs else None), [r[0] for r in apps], [r[0] for r in off]


async def test_the_pipelines_copy_follows_every_change_a_user_makes(
    database: TestDatabase, admin: asyncpg.Connection
) -> None:
    [user] = await make_users(admin, 1)
    steps = [
        ("insert into public.privacy_prefs (user_id, consent_given, monitoring_enabled)"
         " values ($1, true, true)",
         ((True, 14), [], [])),
        ("insert into public.app_allowlist (user_id, app_id) values ($1, 'vscode'), ($1, 'slack')",
         ((True, 14), ["slack", "vscode"], [])),
        ("update public.app_allowlist set enabled = false where user_id = $1 and app_id = 'slack'",
         ((True, 14), ["vscode"], [])),
        ("update public.app_allowlist set scope = 'none' where user_id = $1 and app_id = 'vscode'",
         ((True, 14), [], [])),
        ("update public.app_allowlist set enabled = true, scope = 'metadata_only' where user_id = $1",
         ((True, 14), ["slack", "vscode"], [])),
        ("delete from public.app_allowlist where user_id = $1 and app_id = 'slack'",
         ((True, 14), ["vscode"], [])),
        ("insert into public.signal_toggles (user_id, signal_key, enabled)"
         " values ($1, 'file_deleted', false)",
         ((True, 14), ["vscode"], ["file_deleted"])),
        ("update public.signal_toggles set enabled = true where user_id = $1",
         ((True, 14), ["vscode"], [])),
        ("update public.signal_toggles set enabled = false where user_id = $1",
         ((True, 14), ["vscode"], ["file_deleted"])),
        ("delete from public.signal_toggles where user_id = $1",
         ((True, 14), ["vscode"], [])),
        ("update public.privacy_prefs set monitoring_enabled = false, data_retention_days = 3"
         " where user_id = $1",
         ((False, 3), ["vscode"], [])),
        ("delete from public.privacy_prefs where user_id = $1",
         (None, ["vscode"], [])),
    ]  # fmt: skip
    for sql, expected in steps:
        async with as_user(admin, user) as c:
            await c.execute(sql, user)
        assert await copies(admin, user) == expected, sql
    await admin.execute("truncate public.app_allowlist")
    assert await copies(admin, user) == (None, [], [])


def focus(row_id: int, user: uuid.UUID, app: str, path: str | None = None) -> TelemetryEvent:
    return TelemetryEvent(
        id=row_id,
        pipeline_partition=0,
        user_id=user,
        occurred_at=T0,
        app_id=app,
        event_type="app_focused",
        file_path=path,
        created_at=T0,
    )


async def test_one_batch_never_mixes_two_readings_of_a_users_settings(
    database: TestDatabase, admin: asyncpg.Connection
) -> None:
    [user] = await make_users(admin, 1)
    await admin.execute(
        "insert into public.privacy_prefs (user_id, consent_given, monitoring_enabled)"
        " values ($1, false, true)",
        user,
    )
    await admin.execute(
        "insert into public.app_allowlist (user_id, app_id) values ($1, 'vscode'), ($1, 'slack')", user
    )
    rows = [focus(1, user, "vscode", "/src/a.py"), focus(2, user, "slack")]
    async with connection(database.service_url) as conn, conn.transaction():
        ctx = BatchContext(conn)
        # The first analyzer sees only the file row: no consent, skipped.
        assert await analyzable(ctx, rows[:1]) == []
        # Between two analyzers of the batch the user gives consent and switches vscode off, at once.
        async with as_user(admin, user) as c:
            await c.execute("update public.privacy_prefs set consent_given = true where user_id = $1", user)
            await c.execute(
                "update public.app_allowlist set enabled = false where user_id = $1 and app_id = 'vscode'",
                user,
            )
        # The second analyzer must judge both rows by one of the two states, never consent from the
        # new one with vscode from the old: the vscode row was allowed by neither.
        kept = await analyzable(ctx, rows)
        assert [r.app_id for r in kept] in ([], ["slack"])
