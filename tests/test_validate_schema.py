"""`floyo-pipeline validate-schema` against a migrated database, clean and deliberately broken."""

from __future__ import annotations

import os
import subprocess
import sys

import asyncpg

from floyo_pipeline.rows import TABLE_MODELS, Insight, Suggestion, TelemetryEvent
from floyo_pipeline.schema_check import POLICIES, expected_columns, find_drift
from tests.pg import TestDatabase
from tests.service import ROOT


def validate(url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOYO_", "SUPABASE_"))}
    env["DATABASE_URL"] = url
    return subprocess.run(
        [sys.executable, "-m", "floyo_pipeline", "validate-schema"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


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
    drift, checked = await find_drift(admin)
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
    await admin.execute("alter table public.suggestions alter column confidence type real")
    await admin.execute("alter table public.relationships alter column last_seen drop not null")
    await admin.execute("alter table public.patterns add column note text")
    await admin.execute("create table public.scratch (id int)")
    await admin.execute("alter publication supabase_realtime drop table public.metrics_log")
    await admin.execute("alter table public.telemetry_events disable trigger telemetry_events_notify")
    await admin.execute("drop trigger metrics_log_notify on public.metrics_log")
    await admin.execute("create policy everyone on public.insights for select to anon using (true)")
    await admin.execute("grant select on public.insights to anon")
    await admin.execute("grant usage on schema floyo_pipeline to authenticated")
    await admin.execute("drop table floyo_pipeline.replicas")
    drift, _ = await find_drift(admin)
    assert sorted(drift) == sorted(
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
    await admin.execute("drop table public.signal_toggles")
    drift, _ = await find_drift(admin)
    assert drift == ["public.signal_toggles: table missing"]
