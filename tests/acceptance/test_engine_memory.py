"""G7: peak memory does not grow with the backlog (the service as a subprocess, 50k vs 200k rows)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg

from tests.support.consumers import EFFECTS_DDL, wait_for_effects
from tests.support.pg import Cluster, TestDatabase, create_test_database, drop_test_database
from tests.support.service import ServiceProcess, insert_events, make_users, peak_rss

MIB = 1024 * 1024
Backlog = Callable[[asyncpg.Connection, int], Awaitable[None]]


async def peak_catching_up(cluster: Cluster, rows: int, backlog: Backlog) -> int:
    """Peak RSS of the service (the CLI) catching up on the `rows` rows `backlog` puts in a new database."""
    db = await create_test_database(cluster)
    admin = await asyncpg.connect(db.admin_url)
    try:
        await admin.execute(EFFECTS_DDL)
        await backlog(admin, rows)
        proc = ServiceProcess(
            db.service_url,
            env={"FLOYO_CONSUMERS": "tests.support.consumers:recorders", "FLOYO_LOG_LEVEL": "warning"},
        ).start()
        await wait_for_effects(admin, rows, timeout=240)
        assert proc.proc is not None
        peak = peak_rss(proc.proc.pid)
        assert await proc.stop() == 0
        return peak
    finally:
        await admin.close()
        await drop_test_database(cluster, db.name)


async def small_rows(admin: asyncpg.Connection, rows: int) -> None:
    users = await make_users(admin, 400)
    await insert_events(admin, users, rows // 400)


async def megabyte_rows(admin: asyncpg.Connection, rows: int) -> None:
    """`rows` rows of two users, each with 1 MB of metadata."""
    users = await make_users(admin, 2)
    await admin.execute(
        """insert into public.telemetry_events (user_id, occurred_at, app_id, event_type, metadata)
           select u, now(), 'vscode', 'app_focused',
                  jsonb_build_object('blob', repeat(md5(g::text), 31250))
           from generate_series(1, $2) g, unnest($1::uuid[]) u""",
        users,
        rows // 2,
    )


async def test_peak_memory_is_bounded_whatever_the_backlog(template: Cluster, database: TestDatabase) -> None:
    small = await peak_catching_up(template, 50_000, small_rows)
    large = await peak_catching_up(template, 200_000, small_rows)
    print(f"peak RSS: 50k backlog {small / MIB:.1f} MiB, 200k backlog {large / MIB:.1f} MiB")
    assert large < 200 * MIB
    # Four times the backlog may not cost more than a small constant (allocator noise).
    assert large - small < 16 * MIB


async def test_peak_memory_is_bounded_in_bytes_for_rows_of_a_megabyte(
    template: Cluster, database: TestDatabase
) -> None:
    small = await peak_catching_up(template, 100, megabyte_rows)
    large = await peak_catching_up(template, 400, megabyte_rows)
    print(f"peak RSS with 1 MB rows: 100 rows {small / MIB:.1f} MiB, 400 rows {large / MIB:.1f} MiB")
    assert large < 200 * MIB
    assert large - small < 32 * MIB
