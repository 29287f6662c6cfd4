"""Row level security, run as the real roles with the JWT claims setting PostgREST uses."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg
import pytest

from floyo_pipeline.connections import connect
from floyo_pipeline.rows import TABLE_MODELS
from tests.support.pg import TestDatabase


@dataclass(frozen=True)
class World:
    a: uuid.UUID
    b: uuid.UUID
    a_suggestion: int
    b_suggestion: int


@asynccontextmanager
async def acting_as(
    conn: asyncpg.Connection, role: str, user: uuid.UUID | None = None
) -> AsyncIterator[asyncpg.Connection]:
    """A transaction running as `role` with the caller's claims, as Supabase's API would set them."""
    async with conn.transaction():
        await conn.execute(f"set local role {role}")
        claims = {"role": role} if user is None else {"sub": str(user), "role": role}
        await conn.execute("select set_config('request.jwt.claims', $1, true)", json.dumps(claims))
        yield conn


async def refused_by_rls(admin: asyncpg.Connection, user: uuid.UUID, sql: str, *args: object) -> None:
    """`sql` run as `user` (authenticated) is refused by a row-level security policy."""
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
        async with acting_as(admin, "authenticated", user) as conn:
            await conn.execute(sql, *args)


@pytest.fixture
async def world(admin: asyncpg.Connection) -> World:
    a, b = uuid.uuid4(), uuid.uuid4()
    await admin.execute("insert into auth.users (id, email) values ($1, 'a@x'), ($2, 'b@x')", a, b)
    for user, ext, app in ((a, "py", "vscode"), (b, "js", "webstorm")):
        await admin.execute(
            """insert into public.telemetry_events (user_id, occurred_at, app_id, event_type, file_path)
               values ($1, '2026-01-01', $3, 'file_opened', '/src/x.' || $2)""",
            user,
            ext,
            app,
        )
        await admin.execute(
            "insert into public.privacy_prefs (user_id, consent_given) values ($1, true)", user
        )
        await admin.execute(
            "insert into public.patterns (user_id, file_extension, count, last_used, tools) "
            "values ($1, $2, 3, '2026-01-01', array[$3])",
            user,
            ext,
            app,
        )
        await admin.execute(
            "insert into public.relationships (user_id, source, target, relation_type, weight, last_seen) "
            "values ($1, 'a.' || $2, 'b.' || $2, 'accessed_together', 1, '2026-01-01')",
            user,
            ext,
        )
        await admin.execute(
            """insert into public.insights (user_id, kind, severity, title, body, fingerprint, first_seen,
                                            last_seen)
               values ($1, 'performance_regression', 'warning', 't', 'b', $2,
                       '2026-01-01', '2026-01-01')""",
            user,
            f"fp-{user}",
        )
    await admin.execute(
        """insert into public.insights (user_id, kind, severity, title, body, fingerprint, first_seen,
                                        last_seen)
           values (null, 'lcp_regression', 'info', 'global', 'b', 'fp-global', '2026-01-01', '2026-01-01')"""
    )
    ids = {}
    for user in (a, b):
        ids[user] = await admin.fetchval(
            """insert into public.suggestions (user_id, suggestion_key, trigger, suggested_integration,
                                               reasoning, confidence, created_at)
               values ($1, 'ext:py', 'py files', 'Dropbox sync', 'you use .py a lot', 0.3, '2026-01-01')
               returning id""",
            user,
        )
    return World(a=a, b=b, a_suggestion=ids[a], b_suggestion=ids[b])


OWN_ROW_TABLES = [
    "telemetry_events",
    "privacy_prefs",
    "patterns",
    "relationships",
    "insights",
    "suggestions",
]


async def test_user_reads_only_own_rows(admin: asyncpg.Connection, world: World) -> None:
    for user, other in ((world.a, world.b), (world.b, world.a)):
        async with acting_as(admin, "authenticated", user) as conn:
            for table in OWN_ROW_TABLES:
                owners = [r["user_id"] for r in await conn.fetch(f"select user_id from public.{table}")]
                assert owners == [user], table
            assert (
                await conn.fetchval("select count(*) from public.suggestions where user_id = $1", other) == 0
            )
    # The rows are there: the owner (BYPASSRLS, like Supabase's postgres) sees both users' and the global one.
    assert await admin.fetchval("select count(*) from public.insights") == 3
    assert await admin.fetchval("select count(*) from public.suggestions") == 2


async def test_no_claims_reads_nothing(admin: asyncpg.Connection, world: World) -> None:
    async with acting_as(admin, "authenticated") as conn:
        for table in OWN_ROW_TABLES:
            assert await conn.fetchval(f"select count(*) from public.{table}") == 0, table


async def test_cannot_update_another_users_suggestion(admin: asyncpg.Connection, world: World) -> None:
    async with acting_as(admin, "authenticated", world.a) as conn:
        status = await conn.execute(
            "update public.suggestions set is_dismissed = true, viewed_at = now() where id = $1",
            world.b_suggestion,
        )
        assert status == "UPDATE 0"
    row = await admin.fetchrow(
        "select is_dismissed, viewed_at from public.suggestions where id = $1", world.b_suggestion
    )
    assert row is not None and row["is_dismissed"] is False and row["viewed_at"] is None


async def test_can_flip_the_three_flags_of_own_suggestion(admin: asyncpg.Connection, world: World) -> None:
    async with acting_as(admin, "authenticated", world.a) as conn:
        status = await conn.execute(
            "update public.suggestions set is_dismissed = true, is_applied = true, "
            "viewed_at = '2026-02-01' where id = $1",
            world.a_suggestion,
        )
        assert status == "UPDATE 1"
    row = await admin.fetchrow("select * from public.suggestions where id = $1", world.a_suggestion)
    assert row is not None and row["is_dismissed"] and row["is_applied"] and row["viewed_at"] is not None


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("confidence", "0.9"),
        ("reasoning", "'changed'"),
        ("suggested_integration", "'something else'"),
        ("suggestion_key", "'ext:js'"),
        ("trigger", "'x'"),
        ("actual_files", "array['/etc/passwd']"),
        ("created_at", "now()"),
        ("withdrawn_at", "now()"),
        ("user_id", "gen_random_uuid()"),
    ],
)
async def test_cannot_change_other_columns_of_own_suggestion(
    admin: asyncpg.Connection, world: World, column: str, value: str
) -> None:
    before = await admin.fetchrow("select * from public.suggestions where id = $1", world.a_suggestion)
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied for table suggestions"):
        async with acting_as(admin, "authenticated", world.a) as conn:
            await conn.execute(
                f"update public.suggestions set {column} = {value} where id = $1", world.a_suggestion
            )
    after = await admin.fetchrow("select * from public.suggestions where id = $1", world.a_suggestion)
    assert before == after


async def test_cannot_write_outputs_or_delete_own_suggestion(admin: asyncpg.Connection, world: World) -> None:
    statements = [
        "insert into public.patterns (user_id, file_extension, last_used) values ($1, 'sh', now())",
        "delete from public.suggestions where user_id = $1",
        "insert into public.insights (user_id, kind, severity, title, body, fingerprint, first_seen, "
        "last_seen) values ($1, 'k', 'info', 't', 'b', 'mine', now(), now())",
        "update public.patterns set count = 99 where user_id = $1",
    ]
    for sql in statements:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            async with acting_as(admin, "authenticated", world.a) as conn:
                await conn.execute(sql, world.a)
    assert await admin.fetchval("select count(*) from public.suggestions where user_id = $1", world.a) == 1
    assert await admin.fetchval("select max(count) from public.patterns") == 3


@pytest.mark.parametrize("table", sorted(TABLE_MODELS))
async def test_anon_reads_nothing(admin: asyncpg.Connection, world: World, table: str) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match=f"permission denied for table {table}"):
        async with acting_as(admin, "anon") as conn:
            await conn.fetch(f"select * from public.{table}")


async def test_anon_cannot_insert_telemetry(admin: asyncpg.Connection, world: World) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        async with acting_as(admin, "anon") as conn:
            await conn.execute(
                "insert into public.telemetry_events (user_id, occurred_at, app_id, event_type) "
                "values ($1, now(), 'vscode', 'app_focused')",
                world.a,
            )
    assert await admin.fetchval("select count(*) from public.telemetry_events") == 2


@pytest.mark.parametrize("role", ["authenticated", "anon"])
async def test_private_schema_is_invisible_and_unusable(
    admin: asyncpg.Connection, world: World, role: str
) -> None:
    async with acting_as(admin, role, world.a if role == "authenticated" else None) as conn:
        assert await conn.fetchval("select has_schema_privilege('floyo_pipeline', 'usage')") is False
        visible = await conn.fetchval(
            "select count(*) from information_schema.tables where table_schema = 'floyo_pipeline'"
        )
        assert visible == 0
    for sql in (
        "select * from floyo_pipeline.checkpoints",
        "update floyo_pipeline.checkpoints set lease_owner = 'me'",
        "insert into floyo_pipeline.dead_letters (consumer, stream, partition, row_id, error_class, "
        "error_message, attempts) values ('c', 's', 0, 1, 'E', 'm', 1)",
    ):
        with pytest.raises(
            asyncpg.InsufficientPrivilegeError, match="permission denied for schema floyo_pipeline"
        ):
            async with acting_as(admin, role, world.a) as conn:
                await conn.execute(sql)
    assert await admin.fetchval("select count(*) from floyo_pipeline.dead_letters") == 0


async def test_authenticated_inserts_own_telemetry_only(
    database: TestDatabase, admin: asyncpg.Connection, world: World
) -> None:
    listener = await connect(database.admin_url)
    heard: list[str] = []
    await listener.add_listener("floyo_pipeline", lambda *args: heard.append(str(args[3])))
    try:
        async with acting_as(admin, "authenticated", world.a) as conn:
            await conn.execute(
                "insert into public.telemetry_events (user_id, occurred_at, app_id, event_type, duration_ms) "
                "values ($1, '2026-01-02', 'vscode', 'action_completed', 120)",
                world.a,
            )
        await refused_by_rls(
            admin,
            world.a,
            "insert into public.telemetry_events (user_id, occurred_at, app_id, event_type) "
            "values ($1, '2026-01-02', 'vscode', 'app_focused')",
            world.b,
        )
        for _ in range(100):
            if heard:
                break
            await asyncio.sleep(0.02)
    finally:
        await listener.close()
    counts = dict(await admin.fetch("select user_id, count(*) from public.telemetry_events group by user_id"))
    assert counts == {world.a: 2, world.b: 1}
    # The statement-level NOTIFY trigger runs with the inserting user's rights too.
    assert heard == ["telemetry_events"]


async def test_user_manages_own_privacy_settings_only(admin: asyncpg.Connection, world: World) -> None:
    async with acting_as(admin, "authenticated", world.a) as conn:
        await conn.execute(
            "insert into public.app_allowlist (user_id, app_id, scope) "
            "values ($1, 'vscode', 'metadata_only')",
            world.a,
        )
        assert await conn.execute("update public.privacy_prefs set monitoring_enabled = false") == "UPDATE 1"
    await refused_by_rls(
        admin,
        world.a,
        "insert into public.signal_toggles (user_id, signal_key, enabled) values ($1, 'file_opened', false)",
        world.b,
    )
    prefs = dict(await admin.fetch("select user_id, monitoring_enabled from public.privacy_prefs"))
    assert prefs == {world.a: False, world.b: True}
    assert await admin.fetchval("select count(*) from public.signal_toggles") == 0
    assert await admin.fetchval("select count(*) from public.app_allowlist") == 1
