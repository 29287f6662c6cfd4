"""The embedded server's roles: a fresh server gets Supabase's split once, a set-up stopped at any step
is finished by the next start, an older data folder is left as it was (its `postgres` stays the
superuser and keeps working)."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest
from structlog.testing import capture_logs

from floyo_pipeline.embedded import start_embedded, supabase_roles
from tests.support.embedded_setup import STEP_NAMES, setup_until


async def roles(url: str) -> dict[str, bool]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "select rolname, rolsuper from pg_roles where rolname in ('postgres', 'supabase_admin')"
        )
    finally:
        await conn.close()
    return {r["rolname"]: r["rolsuper"] for r in rows}


async def owner_and_leftovers(url: str) -> tuple[str, list[tuple[object, ...]]]:
    """The bootstrap superuser's name; `postgres` and any set-up role, with their attributes."""
    conn = await asyncpg.connect(url)
    try:
        bootstrap = await conn.fetchval("select rolname from pg_roles where oid = 10")
        rows = await conn.fetch(
            "select rolname, rolsuper, rolcreatedb, rolcreaterole, rolcanlogin, rolreplication, rolbypassrls"
            " from pg_roles where rolname = 'postgres' or rolname like 'floyo_cluster%' order by rolname"
        )
    finally:
        await conn.close()
    return bootstrap, [tuple(r) for r in rows]


async def test_fresh_server_gets_supabases_roles_and_an_older_one_keeps_its_own(tmp_path: Path) -> None:
    fresh, fresh_server = start_embedded(tmp_path / "fresh")
    legacy, legacy_server = start_embedded(tmp_path / "legacy")
    try:
        pg = await supabase_roles(fresh)
        assert (pg.superuser, pg.owner) == ("supabase_admin", "postgres")
        assert await roles(pg.admin_url) == {"supabase_admin": True, "postgres": False}
        assert await supabase_roles(fresh) == pg  # once only
        conn = await asyncpg.connect(pg.admin_url)
        try:
            assert await conn.fetchval("select rolname from pg_roles where oid = 10") == "supabase_admin"
            assert not await conn.fetchval(
                "select exists (select 1 from pg_roles where rolname like 'floyo_cluster%')"
            )
        finally:
            await conn.close()

        # A data folder that already holds a database of ours: nothing is renamed.
        conn = await asyncpg.connect(legacy.url("postgres"))
        try:
            await conn.execute("create database floyo_app")
        finally:
            await conn.close()
        with capture_logs() as logs:
            kept = await supabase_roles(legacy)
        assert (kept.superuser, kept.owner) == ("postgres", "postgres")
        assert await roles(kept.admin_url) == {"postgres": True}
        assert [e["event"] for e in logs] == ["embedded.legacy_roles"]
    finally:
        for server in (fresh_server, legacy_server):
            cleanup = getattr(server, "cleanup", None)
            if cleanup is not None:
                cleanup()


@pytest.mark.parametrize("stopped_after", STEP_NAMES)
async def test_a_setup_stopped_after_any_step_is_finished_by_the_next_start(
    tmp_path: Path, stopped_after: str
) -> None:
    started, server = start_embedded(tmp_path / "data")
    try:
        await setup_until(started, stopped_after)
        pg = await supabase_roles(started)
        assert (pg.superuser, pg.owner) == ("supabase_admin", "postgres")
        assert await owner_and_leftovers(pg.admin_url) == (
            "supabase_admin",
            [("postgres", False, True, True, True, True, True)],
        )
        conn = await asyncpg.connect(pg.owner_url)  # the role the migrations run as
        try:
            assert await conn.fetchval("select current_user") == "postgres"
        finally:
            await conn.close()
        assert await supabase_roles(started) == pg
    finally:
        cleanup = getattr(server, "cleanup", None)
        if cleanup is not None:
            cleanup()
