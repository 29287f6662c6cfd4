"""Retention: exactly the rows older than each user's data_retention_days go, nothing else."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import datetime, timedelta

import asyncpg
import pytest

from consumers import all_consumers
from floyo_pipeline.job_locks import try_lock
from floyo_pipeline.retention import LOCK_NOT_ACQUIRED, RETENTION_LOCK, retention_tables, run_retention
from tests.support.pg import TestDatabase
from tests.support.service import ROOT, fresh_env, make_users, wait_until

CONSUMERS = all_consumers()
TABLES = [t.bare_name for t in retention_tables(CONSUMERS)]

# (table, schema, time column); ids tell the rows apart.
TIME_COLUMNS = {
    "telemetry_events": ("public", "occurred_at"),
    "patterns": ("public", "last_used"),
    "relationships": ("public", "last_seen"),
    "insights": ("public", "last_seen"),
    "file_pattern_state": ("floyo_pipeline", "last_at"),
    "app_workflow_state": ("floyo_pipeline", "last_at"),
    "duration_windows": ("floyo_pipeline", "last_at"),
}
PER_ROW_TABLES = ("telemetry_events", "patterns", "relationships", "insights", "duration_windows")


async def seed(admin: asyncpg.Connection) -> tuple[dict[str, set[str]], datetime]:
    """Rows for three users (7 days, default 14, 30 days) at several ages; returns the keys that must
    survive per table and the database's now()."""
    week, default, month = await make_users(admin, 3)
    await admin.execute(
        "insert into public.privacy_prefs (user_id, consent_given, data_retention_days) "
        "values ($1, true, 7), ($2, true, 30)",
        week,
        month,
    )
    now: datetime = await admin.fetchval("select now()")
    ages = {week: (6, 8), default: (13, 15), month: (29, 31)}
    keep: dict[str, set[str]] = {t: set() for t in TABLES}
    for user, (young, old) in ages.items():
        for age in (young, old):
            at = now - timedelta(days=age)
            tag = f"{user}:{age}"
            await admin.execute(
                "insert into public.telemetry_events (user_id, occurred_at, app_id, event_type, metadata) "
                "values ($1, $2, 'vscode', 'app_focused', jsonb_build_object('tag', $3::text))",
                user,
                at,
                tag,
            )
            await admin.execute(
                "insert into public.patterns (user_id, file_extension, count, last_used) "
                "values ($1, $2, 1, $3)",
                user,
                tag,
                at,
            )
            await admin.execute(
                "insert into public.relationships "
                "(user_id, source, target, relation_type, weight, last_seen) "
                "values ($1, $2, 'b', 'app_transition', 1, $3)",
                user,
                tag,
                at,
            )
            await admin.execute(
                "insert into public.insights (user_id, kind, severity, title, body, fingerprint, first_seen, "
                "last_seen) values ($1, 'k', 'info', 't', 'b', $2, $3, $3)",
                user,
                tag,
                at,
            )
            await admin.execute(
                "insert into floyo_pipeline.duration_windows "
                "(user_id, app_id, event_type, durations, last_at) "
                "values ($1, $2, 'x', '{1}', $3)",
                user,
                tag,
                at,
            )
            if age == young:
                for table in (
                    "telemetry_events",
                    "patterns",
                    "relationships",
                    "insights",
                    "duration_windows",
                ):
                    keep[table].add(tag)
        # One state row per user: keyed by user, at its older age for the 7-day user only.
        state_at = now - timedelta(days=8 if user == week else 1)
        await admin.execute(
            "insert into floyo_pipeline.file_pattern_state (user_id, last_path, last_at) "
            "values ($1, '/p', $2)",
            user,
            state_at,
        )
        await admin.execute(
            "insert into floyo_pipeline.app_workflow_state (user_id, last_app, last_at) values ($1, 'a', $2)",
            user,
            state_at,
        )
        if user != week:
            keep["file_pattern_state"].add(str(user))
            keep["app_workflow_state"].add(str(user))
    # Global insights follow the default of 14 days; suggestions are not touched at all.
    for fingerprint, age in (("global:13", 13), ("global:15", 15)):
        await admin.execute(
            "insert into public.insights (kind, severity, title, body, fingerprint, first_seen, last_seen) "
            "values ('k', 'info', 't', 'b', $1, $2, $2)",
            fingerprint,
            now - timedelta(days=age),
        )
    keep["insights"].add("global:13")
    await admin.execute(
        "insert into public.suggestions (user_id, suggestion_key, trigger, suggested_integration, reasoning, "
        "confidence, created_at) values ($1, 'k', 't', 'i', 'r', 0.5, $2)",
        week,
        now - timedelta(days=100),
    )
    return keep, now


async def present(admin: asyncpg.Connection) -> dict[str, set[str]]:
    key = {
        "telemetry_events": "metadata->>'tag'",
        "patterns": "file_extension",
        "relationships": "source",
        "insights": "fingerprint",
        "file_pattern_state": "user_id::text",
        "app_workflow_state": "user_id::text",
        "duration_windows": "app_id",
    }
    return {
        t: {r[0] for r in await admin.fetch(f"select {key[t]} from {TIME_COLUMNS[t][0]}.{t}")} for t in TABLES
    }


async def test_retention_deletes_exactly_the_expired_rows(
    database: TestDatabase, admin: asyncpg.Connection
) -> None:
    keep, _ = await seed(admin)
    everything = await present(admin)
    expected = {t: len(everything[t]) - len(keep[t]) for t in TABLES}
    assert expected == {
        "telemetry_events": 3,
        "patterns": 3,
        "relationships": 3,
        "insights": 4,
        "file_pattern_state": 1,
        "app_workflow_state": 1,
        "duration_windows": 3,
    }
    service = await asyncpg.connect(database.service_url)
    try:
        assert await run_retention(service, CONSUMERS, dry_run=True) == expected
        assert await present(admin) == everything
        # Another replica running it (holding the lock row): this one does nothing; a dry run counts.
        holder = await asyncpg.connect(database.service_url)
        try:
            async with holder.transaction():
                assert await try_lock(holder, RETENTION_LOCK)
                assert await run_retention(service, CONSUMERS, dry_run=False) == {LOCK_NOT_ACQUIRED: 1}
                assert await run_retention(service, CONSUMERS, dry_run=True) == expected
            assert await present(admin) == everything
            # The scheduled job waits for the holder instead (it may be a killed process's session,
            # whose deletions roll back), then deletes.
            async with holder.transaction():
                assert await try_lock(holder, RETENTION_LOCK)
                waiting = asyncio.ensure_future(run_retention(service, CONSUMERS, dry_run=False, wait=True))
                await wait_until(
                    lambda: admin.fetchval(
                        "select wait_event_type = 'Lock' from pg_stat_activity where pid = $1",
                        service.get_server_pid(),
                    ),
                    what="the job waiting for the lock",
                )
                assert await present(admin) == everything
        finally:
            await holder.close()
        assert await waiting == expected
    finally:
        await service.close()
    assert await present(admin) == keep
    assert await admin.fetchval("select count(*) from public.suggestions") == 1


async def test_cli_dry_run_prints_counts_and_deletes_nothing(
    database: TestDatabase, admin: asyncpg.Connection
) -> None:
    await seed(admin)
    before = await present(admin)
    env = {"DATABASE_URL": database.service_url, "PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "floyo_pipeline", "retention", "--dry-run", "--log-format", "console"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("would delete")]
    assert [line.split() for line in lines] == [
        ["would", "delete", str(n), "row(s)", "from", t]
        for t, n in zip(TABLES, (3, 3, 3, 4, 1, 1, 3), strict=True)
    ]
    assert await present(admin) == before


async def test_no_api_role_can_hold_off_retention(database: TestDatabase, admin: asyncpg.Connection) -> None:
    """anon (any role may take any advisory key, and cannot be stopped from it on Supabase) holds the
    key retention used to take, and tries the lock row: `floyo-pipeline retention` still deletes."""
    keep, _ = await seed(admin)
    evil = await asyncpg.connect(database.admin_url)
    try:
        await evil.execute("set role anon")
        await evil.execute("select pg_advisory_lock(7310002)")
        assert await evil.fetchval("select current_user") == "anon"
        for role in ("anon", "authenticated", "service_role"):
            await evil.execute(f"set role {role}")
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                async with evil.transaction():
                    await try_lock(evil, RETENTION_LOCK)
        await evil.execute("set role anon")
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "floyo_pipeline", "retention"],
            env=fresh_env(DATABASE_URL=database.service_url),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "deleted" in done.stdout and "another replica" not in done.stdout
        assert await present(admin) == keep
    finally:
        await evil.close()
