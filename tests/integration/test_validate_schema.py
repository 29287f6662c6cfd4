"""`floyo-pipeline validate-schema` against a migrated database, clean and deliberately broken."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import asyncpg

from consumers import all_consumers
from floyo_pipeline.migrations import discover, migrate
from floyo_pipeline.rows import TABLE_MODELS, Insight, Suggestion, TelemetryEvent
from floyo_pipeline.schema_check import POLICIES, expected_columns, find_drift
from tests.support.pg import Cluster, TestDatabase, bootstrap, create_database
from tests.support.service import fresh_env, run_cli


def validate(url: str) -> subprocess.CompletedProcess[str]:
    return run_cli("validate-schema", env=fresh_env(DATABASE_URL=url))


async def drift_after(admin: asyncpg.Connection, *statements: str) -> list[str]:
    """What the drift check finds (sorted) once `statements` have changed the migrated schema."""
    for statement in statements:
        await admin.execute(statement)
    drift, _ = await find_drift(admin, all_consumers())
    return sorted(drift)


def test_expected_columns_come_from_the_row_models() -> None:
    telemetry = {name: str(col) for name, col in expected_columns(TelemetryEvent).items()}
    assert telemetry["duration_ms"] == "integer null"
    assert "pipeline_partition" not in telemetry  # computed on read, not stored
    assert telemetry["pipeline_txid"] == "xid8 not null"
    assert telemetry["metadata"] == "jsonb not null"
    assert telemetry["occurred_at"] == "timestamp with time zone not null"
    suggestion = {name: str(col) for name, col in expected_columns(Suggestion).items()}
    assert suggestion["tools_involved"] == "text[] not null"
    assert suggestion["confidence"] == "double precision not null"
    assert suggestion["viewed_at"] == "timestamp with time zone null"
    assert str(expected_columns(Insight)["user_id"]) == "uuid null"
    assert set(POLICIES) == set(TABLE_MODELS)


async def test_clean_after_migrate(database: TestDatabase, admin: asyncpg.Connection) -> None:
    drift, checked = await find_drift(admin, all_consumers())
    assert drift == []
    assert checked["tables"] == len(TABLE_MODELS)
    done = validate(database.admin_url)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("schema OK: 9 tables, ")
    assert done.stderr == ""


async def test_reports_dropped_column_disabled_rls_and_missing_policy(
    database: TestDatabase, admin: asyncpg.Connection
) -> None:
    await admin.execute("alter table public.patterns drop column tools")
    await admin.execute("alter table public.insights disable row level security")
    await admin.execute("drop policy suggestions_update_own_flags on public.suggestions")
    done = validate(database.admin_url)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.splitlines() == [
        "drift: public.patterns.tools: column missing (expected text[] not null)",
        "drift: public.insights: row level security is disabled",
        "drift: public.suggestions: policy suggestions_update_own_flags missing (UPDATE to authenticated)",
        "3 difference(s) from the expected schema",
    ]
    assert "Traceback" not in done.stderr


async def test_reports_types_nullability_publication_triggers_and_exposure(
    admin: asyncpg.Connection,
) -> None:
    drift = await drift_after(
        admin,
        "alter table public.suggestions alter column confidence type real",
        "alter table public.relationships alter column last_seen drop not null",
        "alter table public.patterns add column note text",
        "create table public.scratch (id int)",
        "alter publication supabase_realtime drop table public.metrics_log",
        "alter table public.telemetry_events disable trigger telemetry_events_notify",
        "drop trigger metrics_log_notify on public.metrics_log",
        "create policy everyone on public.insights for select to anon using (true)",
        "grant select on public.insights to anon",
        "grant usage on schema floyo_pipeline to authenticated",
        "drop table floyo_pipeline.replicas",
    )
    assert drift == sorted(
        [
            "public.suggestions.confidence: type is real, expected double precision",
            "public.relationships.last_seen: is timestamp with time zone null, "
            "expected timestamp with time zone not null",
            "public.patterns.note: unexpected column (text null), not in Pattern",
            "public.scratch: row level security is disabled",
            "public.metrics_log: not in publication supabase_realtime",
            "public.telemetry_events: trigger telemetry_events_notify is disabled",
            "public.metrics_log: trigger metrics_log_notify missing",
            "public.insights: unexpected policy everyone (SELECT to anon)",
            "public.insights: anon has table privileges",
            "schema floyo_pipeline: usable by authenticated",
            "floyo_pipeline.replicas: table missing",
        ]
    )


async def test_reports_missing_table(admin: asyncpg.Connection) -> None:
    drift = await drift_after(admin, "drop table public.signal_toggles")
    assert drift == ["public.signal_toggles: table missing"]


async def test_reports_privileges_beyond_what_each_role_needs(admin: asyncpg.Connection) -> None:
    """Supabase's default privileges hand ALL to the API roles: each leftover is reported."""
    drift = await drift_after(
        admin,
        "grant all on public.patterns to authenticated",
        "grant usage on sequence public.insights_id_seq to anon",
        "grant update on sequence public.telemetry_events_id_seq to authenticated",
        "revoke select on public.metrics_log from service_role",
        "revoke select on public.suggestions from authenticated",
        "alter publication supabase_realtime drop table public.insights",
    )
    assert drift == sorted(
        [
            "public.patterns: authenticated has DELETE, INSERT, REFERENCES, TRIGGER, TRUNCATE, UPDATE "
            "(expected at most SELECT)",
            "public.insights_id_seq: anon has sequence privileges",
            "public.telemetry_events_id_seq: authenticated has sequence privileges",
            "public.metrics_log: service_role cannot SELECT (Realtime hints need it)",
            "public.suggestions: authenticated cannot SELECT (the app's live updates need it)",
            "public.insights: not in publication supabase_realtime (the app's live updates)",
        ]
    )


async def test_reports_what_supabases_advisor_would(admin: asyncpg.Connection) -> None:
    drift = await drift_after(
        admin,
        "alter function floyo_pipeline.notify_stream_insert() reset search_path",
        "create function public.helper(n int) returns int language sql as 'select n'",
        "drop index floyo_pipeline.checkpoints_stream_idx",
    )
    assert drift == sorted(
        [
            "function floyo_pipeline.notify_stream_insert(): no fixed search_path "
            "(advisor: function_search_path_mutable)",
            "function public.helper(n integer): no fixed search_path (advisor: function_search_path_mutable)",
            "floyo_pipeline.checkpoints: foreign key checkpoints_stream_fkey has no index "
            "(advisor: unindexed_foreign_keys)",
        ]
    )


async def test_a_migration_that_forgets_to_revoke_anon_is_caught(cluster: Cluster, tmp_path: Path) -> None:
    """The gap the test database used to hide: with Supabase's default privileges (reproduced by the
    compatibility bootstrap), a migration set that never revokes anon leaves every table readable
    by the anon key; validate-schema names each table and the anon role really can query them."""
    for migration in discover():
        text = migration.sql.replace("from anon, authenticated", "from authenticated")
        (tmp_path / migration.path.name).write_text(text, encoding="utf-8")
    name = f"floyo_forgetful_{os.getpid()}"
    await create_database(cluster, name)
    try:
        await bootstrap(cluster, name)
        conn = await asyncpg.connect(cluster.owner_url(name))
        try:
            await migrate(conn, folder=tmp_path)
            drift, _ = await find_drift(conn, all_consumers())
            async with conn.transaction():
                await conn.execute("set local role anon")
                assert await conn.fetchval("select count(*) from public.suggestions") == 0  # no error
                await conn.execute("select setval('public.insights_id_seq', 1000)")
        finally:
            await conn.close()
    finally:
        su = await asyncpg.connect(cluster.superuser_url)
        await su.execute(f"drop database if exists {name} with (force)")
        await su.close()
    exposed = sorted(line for line in drift if "anon has" in line)
    assert exposed == sorted(
        [f"public.{table}: anon has table privileges" for table in TABLE_MODELS]
        + [
            f"public.{table}_id_seq: anon has sequence privileges"
            for table in (
                "insights",
                "metrics_log",
                "patterns",
                "relationships",
                "suggestions",
                "telemetry_events",
            )
        ]
    )
