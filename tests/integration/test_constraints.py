"""Impossible rows are refused by the database itself, whoever inserts them."""

from __future__ import annotations

import re
import uuid

import asyncpg
import pytest

from floyo_pipeline.connections import connect
from floyo_pipeline.engine.streams import STREAMS
from floyo_pipeline.queries import Q
from tests.support.pg import TestDatabase

INSERT_TELEMETRY = """insert into public.telemetry_events
    (user_id, occurred_at, app_id, event_type, duration_ms, metadata)
    values ($1, '2026-01-01', $2, $3, $4, $5::jsonb)"""


@pytest.fixture
async def user(admin: asyncpg.Connection) -> uuid.UUID:
    uid = uuid.uuid4()
    await admin.execute("insert into auth.users (id) values ($1)", uid)
    return uid


async def test_valid_row_is_accepted(admin: asyncpg.Connection, user: uuid.UUID) -> None:
    await admin.execute(INSERT_TELEMETRY, user, "vscode", "file_opened", 0, {"lines": 3})
    row = await admin.fetchrow(
        "select duration_ms, metadata, floyo_pipeline.user_partition(user_id) as partition,"
        " pipeline_txid from public.telemetry_events"
    )
    assert row is not None and row["duration_ms"] == 0 and row["metadata"] == {"lines": 3}
    assert 0 <= row["partition"] < 64
    assert row["pipeline_txid"] > 0


@pytest.mark.parametrize(
    ("app_id", "event_type", "duration_ms", "metadata", "constraint"),
    [
        ("vscode", "file_opened", -1, {}, "telemetry_events_duration_ms_check"),
        ("vscode", "file_opened", 5, [1, 2], "telemetry_events_metadata_check"),
        ("vscode", "file_opened", 5, "just a string", "telemetry_events_metadata_check"),
        ("vscode", "file_opened", 5, 42, "telemetry_events_metadata_check"),
        ("vscode", "", 5, {}, "telemetry_events_event_type_check"),
        ("", "file_opened", 5, {}, "telemetry_events_app_id_check"),
    ],
)
async def test_impossible_telemetry_is_refused(
    admin: asyncpg.Connection,
    user: uuid.UUID,
    app_id: str,
    event_type: str,
    duration_ms: int,
    metadata: object,
    constraint: str,
) -> None:
    with pytest.raises(asyncpg.CheckViolationError) as caught:
        await admin.execute(INSERT_TELEMETRY, user, app_id, event_type, duration_ms, metadata)
    assert caught.value.constraint_name == constraint
    assert await admin.fetchval("select count(*) from public.telemetry_events") == 0


async def test_unknown_user_is_refused(admin: asyncpg.Connection) -> None:
    with pytest.raises(asyncpg.ForeignKeyViolationError) as caught:
        await admin.execute(INSERT_TELEMETRY, uuid.uuid4(), "vscode", "file_opened", 5, {})
    assert caught.value.constraint_name == "telemetry_events_user_id_fkey"
    assert await admin.fetchval("select count(*) from public.telemetry_events") == 0


async def test_null_user_and_null_event_type_are_refused(admin: asyncpg.Connection, user: uuid.UUID) -> None:
    with pytest.raises(asyncpg.NotNullViolationError):
        await admin.execute(INSERT_TELEMETRY, None, "vscode", "file_opened", 5, {})
    with pytest.raises(asyncpg.NotNullViolationError):
        await admin.execute(INSERT_TELEMETRY, user, "vscode", None, 5, {})
    assert await admin.fetchval("select count(*) from public.telemetry_events") == 0


async def test_refused_for_the_service_role_too(database: TestDatabase, user: uuid.UUID) -> None:
    """The pipeline's own login (not a superuser) cannot write impossible rows either."""
    conn = await connect(database.service_url)
    try:
        assert await conn.fetchval("select rolsuper from pg_roles where rolname = current_user") is False
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(
                "insert into public.metrics_log (source, metric) values ('carrier-pigeon', '{}'::jsonb)"
            )
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("insert into public.metrics_log (source, metric) values ('ci', '[]'::jsonb)")
        await conn.execute(
            "insert into public.metrics_log (source, metric) values ('ci', '{\"queueLength\": 4}')"
        )
    finally:
        await conn.close()


@pytest.mark.parametrize(
    ("sql", "constraint"),
    [
        (
            "insert into public.suggestions (user_id, suggestion_key, trigger, suggested_integration, "
            "reasoning, confidence, created_at) values ($1, 'k', 't', 'i', 'r', 1.5, now())",
            "suggestions_confidence_check",
        ),
        (
            "insert into public.relationships (user_id, source, target, relation_type, last_seen) "
            "values ($1, 'a', 'b', 'friends', now())",
            "relationships_relation_type_check",
        ),
        (
            "insert into public.patterns (user_id, file_extension, count, last_used) "
            "values ($1, 'py', -1, now())",
            "patterns_count_check",
        ),
        (
            "insert into public.app_allowlist (user_id, app_id, scope) values ($1, 'vscode', 'everything')",
            "app_allowlist_scope_check",
        ),
        (
            "insert into public.privacy_prefs (user_id, data_retention_days) values ($1, 0)",
            "privacy_prefs_data_retention_days_check",
        ),
        (
            "insert into public.insights (user_id, kind, severity, title, body, evidence, fingerprint, "
            "first_seen, last_seen) values ($1, 'k', 'fatal', 't', 'b', '{}', 'f', now(), now())",
            "insights_severity_check",
        ),
    ],
)
async def test_impossible_outputs_and_settings_are_refused(
    admin: asyncpg.Connection, user: uuid.UUID, sql: str, constraint: str
) -> None:
    with pytest.raises(asyncpg.CheckViolationError) as caught:
        await admin.execute(sql, user)
    assert caught.value.constraint_name == constraint


async def test_engine_queries_partition_users_like_user_partition(admin: asyncpg.Connection) -> None:
    """The engine's queries spell out floyo_pipeline.user_partition()'s body (the function, with its
    fixed search_path, is not inlined): both must put every user in the same partition."""
    body = await admin.fetchval(
        "select prosrc from pg_proc where oid = 'floyo_pipeline.user_partition(uuid)'::regprocedure"
    )
    expression = body.strip().removeprefix("select ")
    assert expression == "get_byte(uuid_send(user_id), 15) % 64"
    text = "\n".join([*Q.values(), *STREAMS["telemetry_events"].queries.values()])
    assert not re.search(r"user_partition\([^)]", text)  # no call with an argument
    spelled = re.findall(r"get_byte\(uuid_send\((?:\w+\.)?user_id\), 15\) % 64", text)
    assert spelled and len(spelled) == text.count("get_byte(")
    users = [uuid.uuid4() for _ in range(200)]
    await admin.execute("insert into auth.users (id) select unnest($1::uuid[])", users)
    await admin.execute(
        "insert into public.telemetry_events (user_id, occurred_at, app_id, event_type) "
        "select u, now(), 'vscode', 'app_focused' from unnest($1::uuid[]) u",
        users,
    )
    for row_id in await admin.fetch("select id from public.telemetry_events"):
        row = await admin.fetchrow(STREAMS["telemetry_events"].queries["fetch_row"], row_id["id"], 1 << 20)
        assert row is not None
        assert row["pipeline_partition"] == await admin.fetchval(
            "select floyo_pipeline.user_partition($1)", row["user_id"]
        )
