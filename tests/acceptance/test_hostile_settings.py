"""G10 through the real CLI: what a user can do to their own privacy settings (the tables the app
writes: privacy_prefs, app_allowlist, signal_toggles) costs nobody else anything. Both attacks here
stopped or bloated the service before the pipeline read its own copy of the settings."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import asyncpg

from tests.support.analyzers import T0, consenting_users
from tests.support.clients import as_user, caught_up
from tests.support.pg import TestDatabase, connection
from tests.support.service import ServiceProcess, peak_rss, wait_until

MIB = 1024 * 1024
SETTINGS_TABLES = ("public.privacy_prefs", "public.app_allowlist", "public.signal_toggles")


async def switch_apps(admin: asyncpg.Connection, users: list[uuid.UUID], hour: int = 0) -> None:
    """Each user goes from vscode to slack ten seconds later, `hour` hours after T0: one app transition
    each (rounds an hour apart add no transition between them)."""
    for user in users:
        async with as_user(admin, user) as c:
            await c.execute(
                """insert into public.telemetry_events (user_id, occurred_at, app_id, event_type)
                   values ($1, $2, 'vscode', 'app_focused'),
                          ($1, $2 + interval '10 s', 'slack', 'app_focused')""",
                user,
                T0 + timedelta(hours=hour),
            )


async def transitions(admin: asyncpg.Connection, users: list[uuid.UUID]) -> int:
    return int(
        await admin.fetchval(
            """select coalesce(sum(weight), 0) from public.relationships
               where user_id = any($1::uuid[]) and relation_type = 'app_transition'""",
            users,
        )
    )


async def test_a_user_locking_the_settings_tables_holds_up_nobody(
    database: TestDatabase, admin: asyncpg.Connection
) -> None:
    attacker, *others = await consenting_users(admin, 9, ("vscode", "slack"))
    proc = ServiceProcess(database.service_url).start()
    try:
        await proc.wait_for_event("lease.acquired")
        async with connection(database.admin_url) as evil, as_user(evil, attacker):
            # UPDATE and DELETE on a table (which users need on their settings) allow any lock mode,
            # and row level security does not apply to LOCK.
            for table in SETTINGS_TABLES:
                await evil.execute(f"lock table {table} in access exclusive mode")
            held = await admin.fetchval(
                """select count(*) from pg_locks l join pg_class c on c.oid = l.relation
                   where l.mode = 'AccessExclusiveLock' and l.granted
                     and c.relname in ('privacy_prefs', 'app_allowlist', 'signal_toggles')"""
            )
            assert held == 3
            await switch_apps(admin, others)

            async def everyone_processed() -> bool:
                return await transitions(admin, others) == len(others)

            await wait_until(everyone_processed, timeout=60, what="other users' rows under the locks")
            assert await caught_up(admin)
    finally:
        assert await proc.stop() == 0


async def test_huge_settings_of_one_user_cost_the_others_no_memory(
    database: TestDatabase, admin: asyncpg.Connection
) -> None:
    attacker, *others = await consenting_users(admin, 17, ("vscode", "slack"))
    # 200 allow-listed apps and 200 switched-off signals of 200 kB each (40 MB each way, compressed
    # to almost nothing in the database): all of it used to be read for every batch with their rows.
    async with as_user(admin, attacker) as c:
        await c.execute(
            """insert into public.app_allowlist (user_id, app_id, enabled, scope)
               select $1, g::text || repeat('x', 204800), true, 'metadata_only'
               from generate_series(1, 200) g""",
            attacker,
        )
        await c.execute(
            """insert into public.signal_toggles (user_id, signal_key, enabled)
               select $1, g::text || repeat('x', 204800), false from generate_series(1, 200) g""",
            attacker,
        )
    proc = ServiceProcess(database.service_url).start()
    try:
        await proc.wait_for_event("lease.acquired")
        assert proc.proc is not None
        await switch_apps(admin, others[:4])
        await wait_until(lambda: caught_up(admin), timeout=60, what="a first batch")
        before = peak_rss(proc.proc.pid)
        for hour in (1, 2, 3):
            await switch_apps(admin, [attacker, *others], hour)
            await asyncio.sleep(0.5)
        await wait_until(lambda: caught_up(admin), timeout=120, what="the rows with the attacker's")
        grown = peak_rss(proc.proc.pid) - before
        print(f"peak RSS {before / MIB:.1f} MiB before the attacker's rows, +{grown / MIB:.1f} MiB after")
        assert grown < 20 * MIB
        assert await transitions(admin, others) == 4 + 3 * len(others)
    finally:
        assert await proc.stop() == 0
