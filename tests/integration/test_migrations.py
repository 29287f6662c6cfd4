"""Migrations on a real, initially empty database: apply, re-apply, roll back, fail part-way."""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from floyo_pipeline.connections import connect
from floyo_pipeline.migrations import (
    MigrationError,
    discover,
    ensure_compat,
    is_supabase,
    migrate,
    migrate_down,
)
from tests.support.pg import Cluster, bootstrap, create_database, with_database
from tests.support.service import ROOT, fresh_env, run_cli

MIGRATIONS = ROOT / "supabase" / "migrations"
_counter = itertools.count(1)

# Everything a migration can create, as comparable text (no OIDs, no column positions: a column
# dropped and re-added gets a new attnum). Privileges come from information_schema, which lists the
# owner's implicit ones too, so NULL and explicit default ACLs compare equal.
_NOT_SYSTEM = "not in ('pg_catalog', 'information_schema', 'pg_toast')"
CATALOG_QUERIES: dict[str, str] = {
    "schemas": f"select nspname from pg_namespace where nspname {_NOT_SYSTEM} and nspname !~ '^pg_'",
    "relations": f"""select n.nspname, c.relname, c.relkind::text, c.relrowsecurity, c.relforcerowsecurity,
                            c.relreplident::text
                     from pg_class c join pg_namespace n on n.oid = c.relnamespace
                     where n.nspname {_NOT_SYSTEM} and n.nspname !~ '^pg_'""",
    "columns": f"""select table_schema, table_name, column_name, data_type, udt_name, is_nullable,
                          column_default, is_identity, identity_generation, is_generated,
                          generation_expression
                   from information_schema.columns where table_schema {_NOT_SYSTEM}""",
    "constraints": f"""select n.nspname, c.conrelid::regclass::text, c.conname,
                              pg_get_constraintdef(c.oid)
                       from pg_constraint c join pg_namespace n on n.oid = c.connamespace
                       where n.nspname {_NOT_SYSTEM}""",
    "indexes": f"""select schemaname, tablename, indexname, indexdef
                   from pg_indexes where schemaname {_NOT_SYSTEM}""",
    "policies": """select schemaname, tablename, policyname, permissive, roles::text, cmd, qual, with_check
                   from pg_policies""",
    "triggers": """select c.relname, t.tgname, t.tgenabled::text, pg_get_triggerdef(t.oid)
                   from pg_trigger t join pg_class c on c.oid = t.tgrelid where not t.tgisinternal""",
    "functions": f"""select n.nspname, p.proname, pg_get_function_identity_arguments(p.oid),
                            md5(pg_get_functiondef(p.oid))
                     from pg_proc p join pg_namespace n on n.oid = p.pronamespace
                     where n.nspname {_NOT_SYSTEM}""",
    "publication": "select pubname, schemaname, tablename from pg_publication_tables",
    "table_privileges": f"""select grantor, grantee, table_schema, table_name, privilege_type
                            from information_schema.table_privileges where table_schema {_NOT_SYSTEM}""",
    "column_privileges": f"""select grantee, table_schema, table_name, column_name, privilege_type
                             from information_schema.column_privileges where table_schema {_NOT_SYSTEM}""",
    "schema_privileges": f"""select n.nspname, a.grantee::regrole::text, a.privilege_type
                             from pg_namespace n,
                                  aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a
                             where n.nspname {_NOT_SYSTEM} and n.nspname !~ '^pg_'""",
    "function_privileges": f"""select n.nspname, p.proname, a.grantee::regrole::text, a.privilege_type
                               from pg_proc p join pg_namespace n on n.oid = p.pronamespace,
                                    aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
                               where n.nspname {_NOT_SYSTEM}""",
    "default_privileges": """select coalesce(n.nspname, '-'), d.defaclobjtype::text, d.defaclacl::text
                             from pg_default_acl d left join pg_namespace n on n.oid = d.defaclnamespace""",
    "bookkeeping_rows": """select stream, partitions from floyo_pipeline.streams
                           where to_regclass('floyo_pipeline.streams') is not null""",
    "migrations": "select version, name from supabase_migrations.schema_migrations",
}


async def catalog_dump(conn: asyncpg.Connection) -> dict[str, list[tuple[Any, ...]]]:
    dump: dict[str, list[tuple[Any, ...]]] = {}
    for key, sql in CATALOG_QUERIES.items():
        if key == "bookkeeping_rows" and not await conn.fetchval(
            "select to_regclass('floyo_pipeline.streams') is not null"
        ):
            dump[key] = []
            continue
        dump[key] = sorted(tuple(r.values()) for r in await conn.fetch(sql))
    return dump


def diff(a: dict[str, list[tuple[Any, ...]]], b: dict[str, list[tuple[Any, ...]]]) -> list[str]:
    """Readable differences for the assertion message."""
    out = []
    for key in a:
        only_a = sorted(set(a[key]) - set(b[key]), key=repr)
        only_b = sorted(set(b[key]) - set(a[key]), key=repr)
        out += [f"{key} only before: {row}" for row in only_a]
        out += [f"{key} only after: {row}" for row in only_b]
    return out


async def tracked(conn: asyncpg.Connection) -> list[str]:
    rows = await conn.fetch("select version from supabase_migrations.schema_migrations order by 1")
    return [r["version"] for r in rows]


@pytest.fixture
async def empty_db(cluster: Cluster) -> AsyncIterator[asyncpg.Connection]:
    """A brand-new database as a Supabase project starts (the compatibility bootstrap, nothing
    migrated), connected as the owner that runs the migrations."""
    name = f"floyo_empty_{os.getpid()}_{next(_counter)}"
    await create_database(cluster, name)
    await bootstrap(cluster, name)
    conn = await connect(cluster.owner_url(name))
    try:
        yield conn
    finally:
        await conn.close()
        su = await connect(cluster.superuser_url)
        try:
            await su.execute(f"drop database if exists {name} with (force)")
        finally:
            await su.close()


async def test_migrations_apply_on_empty_database_and_reapply_changes_nothing(
    empty_db: asyncpg.Connection,
) -> None:
    assert await empty_db.fetchval("select to_regclass('public.telemetry_events') is null")
    assert await empty_db.fetchval("select not rolsuper from pg_roles where rolname = current_user")
    applied = await migrate(empty_db)
    expected = [m.version for m in discover(MIGRATIONS)]
    assert [m.version for m in applied] == expected
    assert await tracked(empty_db) == expected
    first = await catalog_dump(empty_db)
    assert ("public", "telemetry_events", "r", True, False, "d") in first["relations"]
    assert any(p[2] == "suggestions_update_own_flags" for p in first["policies"])

    assert await migrate(empty_db) == []
    assert diff(first, await catalog_dump(empty_db)) == []

    # Every migration file is safe to run twice, even outside the tracking table.
    for migration in discover(MIGRATIONS):
        async with empty_db.transaction():
            await empty_db.execute(migration.sql)
    assert diff(first, await catalog_dump(empty_db)) == []


async def test_rollback_to_first_version_and_up_again(
    empty_db: asyncpg.Connection, cluster: Cluster, tmp_path: Path
) -> None:
    migrations = discover(MIGRATIONS)
    first_version = migrations[0].version
    await migrate(empty_db)
    full = await catalog_dump(empty_db)

    undone = await migrate_down(empty_db, first_version)
    assert [m.version for m in undone] == [m.version for m in reversed(migrations[1:])]
    assert all(m.path.name.endswith(".down.sql") for m in undone)
    after_down = await catalog_dump(empty_db)
    assert after_down["migrations"] == [(first_version, migrations[0].name)]

    # The rolled-back database equals one where only the first migration was ever applied.
    name = f"floyo_first_{os.getpid()}_{next(_counter)}"
    await create_database(cluster, name)
    await bootstrap(cluster, name)
    reference = await connect(cluster.owner_url(name))
    try:
        shutil.copy(migrations[0].path, tmp_path)
        await migrate(reference, folder=tmp_path)
        assert diff(await catalog_dump(reference), after_down) == []
    finally:
        await reference.close()
        su = await connect(cluster.superuser_url)
        await su.execute(f"drop database if exists {name} with (force)")
        await su.close()

    reapplied = await migrate(empty_db)
    assert [m.version for m in reapplied] == [m.version for m in migrations[1:]]
    assert diff(full, await catalog_dump(empty_db)) == []


async def test_rollback_refuses_unknown_version_and_missing_file(
    empty_db: asyncpg.Connection, tmp_path: Path
) -> None:
    await migrate(empty_db)
    before = await catalog_dump(empty_db)
    with pytest.raises(MigrationError, match="unknown migration version '19990101000000'"):
        await migrate_down(empty_db, "19990101000000")

    # A copy of the project's folders with the newest rollback missing: nothing may run at all.
    (tmp_path / "migrations").mkdir()
    for m in discover(MIGRATIONS):
        shutil.copy(m.path, tmp_path / "migrations")
    shutil.copytree(ROOT / "supabase" / "rollbacks", tmp_path / "rollbacks")
    newest = discover(MIGRATIONS)[-1]
    missing = f"{newest.version}_{newest.name}.down.sql"
    (tmp_path / "rollbacks" / missing).unlink()
    with pytest.raises(MigrationError, match=f"missing rollback {missing}"):
        await migrate_down(empty_db, discover(MIGRATIONS)[0].version, folder=tmp_path / "migrations")
    assert diff(before, await catalog_dump(empty_db)) == []

    # Rolling back to the newest applied version is a no-op.
    assert await migrate_down(empty_db, newest.version) == []
    assert diff(before, await catalog_dump(empty_db)) == []


async def test_failing_migration_stops_with_file_and_error_and_keeps_earlier(
    empty_db: asyncpg.Connection, tmp_path: Path
) -> None:
    real = discover(MIGRATIONS)
    shutil.copy(real[0].path, tmp_path)
    bad = tmp_path / "20261126000150_bad_step.sql"
    bad.write_text("create table public.half_done (id int);\nselect 1 / 0;\n", encoding="utf-8")
    shutil.copy(real[1].path, tmp_path)

    with pytest.raises(MigrationError) as caught:
        await migrate(empty_db, folder=tmp_path)
    message = str(caught.value)
    assert "20261126000150_bad_step.sql" in message
    assert "DivisionByZeroError" in message and "division by zero" in message

    assert await tracked(empty_db) == [real[0].version]
    assert await empty_db.fetchval("select to_regclass('public.telemetry_events') is not null")
    assert not await empty_db.fetchval("select to_regclass('public.half_done') is not null")
    assert not await empty_db.fetchval(
        "select exists (select 1 from pg_namespace where nspname = 'floyo_pipeline')"
    )

    bad.write_text("create table public.half_done (id int);\n", encoding="utf-8")
    applied = await migrate(empty_db, folder=tmp_path)
    assert [m.version for m in applied] == ["20261126000150", real[1].version]


async def test_cli_migrate_down_to_and_up(empty_db: asyncpg.Connection, cluster: Cluster) -> None:
    name = await empty_db.fetchval("select current_database()")
    env = fresh_env(DATABASE_URL=cluster.owner_url(name))
    migrations = discover(MIGRATIONS)

    up = run_cli("migrate", env=env)
    assert up.returncode == 0, up.stderr
    assert f"{len(migrations)} migration(s) applied" in up.stdout

    down = run_cli("migrate", "--down-to", migrations[1].version, env=env)
    assert down.returncode == 0, down.stderr
    rolled = [line for line in down.stdout.splitlines() if line.startswith("rolled back ")]
    assert rolled == [f"rolled back {m.version}_{m.name}" for m in reversed(migrations[2:])]
    assert await tracked(empty_db) == [m.version for m in migrations[:2]]
    # Rolled back past the policies, the tables stay closed: RLS on (since their creation), no policy.
    assert await empty_db.fetchval(
        "select relrowsecurity from pg_class where oid = 'public.patterns'::regclass"
    )
    assert await empty_db.fetchval("select count(*) from pg_policies where tablename = 'patterns'") == 0

    unknown = run_cli("migrate", "--down-to", "20000101000000", env=env)
    assert unknown.returncode == 1
    assert "unknown migration version '20000101000000'" in unknown.stderr
    assert "Traceback" not in unknown.stderr

    again = run_cli("migrate", env=env)
    assert again.returncode == 0, again.stderr
    assert f"{len(migrations) - 2} migration(s) applied" in again.stdout


ALL_TABLE_PRIVILEGES = ["DELETE", "INSERT", "REFERENCES", "SELECT", "TRIGGER", "TRUNCATE", "UPDATE"]


async def test_bootstrap_reproduces_supabases_roles_and_default_privileges(
    empty_db: asyncpg.Connection, cluster: Cluster
) -> None:
    """What Supabase's own tests check of a new project (supabase/postgres migrations/tests):
    `postgres` is no superuser, and what it creates in public is open to every API role."""
    me = await empty_db.fetchrow(
        "select rolsuper, rolbypassrls, rolcreaterole, rolcreatedb from pg_roles where rolname = current_user"
    )
    assert me is not None and dict(me) == {
        "rolsuper": False,
        "rolbypassrls": True,
        "rolcreaterole": True,
        "rolcreatedb": True,
    }
    await empty_db.execute("create table public.test_priv (id bigint generated always as identity, x int)")
    await empty_db.execute("create function public.test_fn() returns int language sql as 'select 1'")
    for role in ("anon", "authenticated", "service_role"):
        granted = await empty_db.fetch(
            "select privilege_type from information_schema.role_table_grants "
            "where table_name = 'test_priv' and grantee = $1 order by 1",
            role,
        )
        assert [r[0] for r in granted] == ALL_TABLE_PRIVILEGES, role
        assert await empty_db.fetchval(
            "select has_sequence_privilege($1, 'public.test_priv_id_seq', 'USAGE, SELECT, UPDATE')", role
        )
        assert await empty_db.fetchval(
            "select has_function_privilege($1, 'public.test_fn()', 'EXECUTE')", role
        )
    assert (
        await empty_db.fetchval(
            "select pg_get_userbyid(pubowner) from pg_publication where pubname = 'supabase_realtime'"
        )
        == cluster.owner
    )
    for role in ("anon", "authenticated", "service_role"):  # postgres may act as them (SET ROLE)
        assert await empty_db.fetchval("select pg_has_role(current_user, $1, 'member')", role)
    # A second run as the owner (no superuser) leaves the bootstrap alone.
    assert await ensure_compat(empty_db) is False


async def test_bootstrap_never_runs_on_a_supabase_project(cluster: Cluster) -> None:
    """A database whose `auth` schema is Supabase Auth's (it has auth.refresh_tokens) is left alone,
    even by a superuser; the bootstrap's own `auth` is recognised and refreshed."""
    name = f"floyo_supabase_like_{os.getpid()}_{next(_counter)}"
    await create_database(cluster, name)
    su = await connect(with_database(cluster.superuser_url, name))
    try:
        await su.execute(
            "create schema auth; create table auth.refresh_tokens (id bigint);"
            " create table auth.users (id uuid)"
        )
        assert await is_supabase(su) is True
        assert await ensure_compat(su) is False
        assert await su.fetchval("select to_regprocedure('auth.uid()') is null")
        await su.execute("drop schema auth cascade")
        assert await ensure_compat(su) is True and await is_supabase(su) is False
        assert await ensure_compat(su) is True  # a superuser refreshes it
    finally:
        await su.close()
        admin = await connect(cluster.superuser_url)
        await admin.execute(f"drop database if exists {name} with (force)")
        await admin.close()


async def test_no_api_role_can_hold_up_migrate(empty_db: asyncpg.Connection, cluster: Cluster) -> None:
    """anon holds the advisory keys `migrate` once waited for, and cannot reach the lock row that
    replaced them: `floyo-pipeline migrate` runs to the end (it used to wait for ever)."""
    name = await empty_db.fetchval("select current_database()")
    env = fresh_env(DATABASE_URL=cluster.owner_url(name))
    assert run_cli("migrate", env=env).returncode == 0
    evil = await connect(cluster.owner_url(name))
    try:
        await evil.execute("set role anon")
        await evil.execute("select pg_advisory_lock(7310001), pg_advisory_lock(7310002)")
        for role in ("anon", "authenticated", "service_role"):
            await evil.execute(f"set role {role}")
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await evil.execute("select * from supabase_migrations.floyo_migrate_lock for update")
        await evil.execute("set role anon")
        again = run_cli("migrate", env=env, timeout=60)
        assert again.returncode == 0, again.stderr
        assert again.stdout.strip().splitlines() == ["schema is up to date"]
    finally:
        await evil.close()


async def test_migrate_gives_up_on_a_held_lock_with_one_line_naming_the_holder(
    empty_db: asyncpg.Connection, cluster: Cluster
) -> None:
    """A migrate that cannot have the lock within FLOYO_MIGRATE_LOCK_TIMEOUT_SECONDS exits 1 with one
    line naming the session holding it, instead of hanging a release command."""
    name = await empty_db.fetchval("select current_database()")
    env = fresh_env(DATABASE_URL=cluster.owner_url(name), FLOYO_MIGRATE_LOCK_TIMEOUT_SECONDS="2")
    assert run_cli("migrate", env=env).returncode == 0
    holder = await connect(cluster.owner_url(name), server_settings={"application_name": "stuck-deploy"})
    try:
        async with holder.transaction():
            await holder.execute("select * from supabase_migrations.floyo_migrate_lock for update")
            started = time.monotonic()
            blocked = run_cli("migrate", env=env, timeout=60)
            print(f"a blocked migrate (bound 2 s) exited after {time.monotonic() - started:.2f} s")
            pid = holder.get_server_pid()
        assert blocked.returncode == 1
        lines = blocked.stderr.strip().splitlines()
        assert len(lines) == 1, blocked.stderr
        assert "migration lock" in lines[0] and f"pid {pid} " in lines[0] and "'stuck-deploy'" in lines[0]
        assert "gave up after 2 s (FLOYO_MIGRATE_LOCK_TIMEOUT_SECONDS)" in lines[0]
        # The holder gone, the next migrate runs.
        after = run_cli("migrate", env=env, timeout=60)
        assert after.returncode == 0 and "schema is up to date" in after.stdout, after.stderr
    finally:
        await holder.close()


async def test_two_migrates_at_once_one_applies_the_other_finds_nothing_to_do(
    empty_db: asyncpg.Connection, cluster: Cluster
) -> None:
    """Two replicas' release commands on a new database: one applies everything, the other waits for
    it and then finds the schema up to date; nothing is applied twice."""
    name = await empty_db.fetchval("select current_database()")
    env = fresh_env(DATABASE_URL=cluster.owner_url(name))
    runs = await asyncio.gather(*(asyncio.to_thread(run_cli, "migrate", env=env) for _ in range(2)))
    assert [r.returncode for r in runs] == [0, 0], [r.stderr for r in runs]
    outputs = sorted(r.stdout.strip().splitlines()[-1] for r in runs)
    assert outputs == [f"{len(discover(MIGRATIONS))} migration(s) applied", "schema is up to date"]
    assert await tracked(empty_db) == [m.version for m in discover(MIGRATIONS)]
