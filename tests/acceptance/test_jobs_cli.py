"""Scheduled jobs through the real CLI: a process killed (SIGKILL) in the middle of a job."""

from __future__ import annotations

import asyncio
import time

import asyncpg

from tests.support.analyzers import consenting_users
from tests.support.clients import as_user
from tests.support.pg import TestDatabase, connection
from tests.support.service import ServiceProcess, wait_until

# A lease TTL far longer than the test: the first process's claim can only die with its incarnation
# (a restart under the same replica id), never by its heartbeat expiring.
MACHINE_1 = {
    "FLOYO_REPLICA_ID": "machine-1",
    "FLOYO_LEASE_TTL_SECONDS": "600",
    "FLOYO_RETENTION_SCHEDULE": "@every 60s",
}
INSERT = """insert into public.telemetry_events (user_id, occurred_at, app_id, event_type)
            values ($1, now() - make_interval(days => $2), 'vscode', 'app_focused')"""


async def retention_runs(admin: asyncpg.Connection) -> list[asyncpg.Record]:
    return list(
        await admin.fetch(
            "select period_start, replica_id, status, finished_at, result from floyo_pipeline.job_runs"
            " where job = 'retention' order by period_start"
        )
    )


async def test_kill_9_during_retention_then_a_restart_runs_the_period_again(
    database: TestDatabase, admin: asyncpg.Connection
) -> None:
    (user,) = await consenting_users(admin, 1, ("vscode",), retention_days=1)
    async with as_user(admin, user) as c:
        await c.execute(INSERT, user, 30)  # expired
        await c.execute(INSERT, user, 0)  # kept
    # Start a few seconds before a minute boundary (an `@every 60s` period), so that the job starts
    # soon and the restart falls in the same period.
    now = time.time()
    boundary = (now // 60 + 1) * 60
    if boundary - now < 12:
        boundary += 60
    await asyncio.sleep(boundary - now - 8)
    first = ServiceProcess(database.service_url, env=MACHINE_1).start()
    async with connection(database.admin_url) as blocker:
        # Someone's long transaction holds the retention's delete: the job is in flight when killed.
        held = blocker.transaction()
        await held.start()
        await blocker.execute("lock table public.telemetry_events in share mode")
        await first.wait_for_event("job.started", timeout=90)
        await wait_until(
            lambda: admin.fetchval(
                "select exists (select 1 from pg_stat_activity where wait_event_type = 'Lock'"
                " and query like '%delete from public.telemetry_events%')"
            ),
            what="retention waiting for the table",
        )
        (killed,) = await retention_runs(admin)
        assert killed["status"] == "running" and killed["replica_id"].startswith("machine-1#")
        first.kill()
        await held.rollback()

    second = ServiceProcess(database.service_url, env=MACHINE_1).start()
    try:

        async def period_done() -> bool:
            runs = await retention_runs(admin)
            return bool(runs) and runs[0]["status"] == "done"

        await wait_until(period_done, timeout=60, what="the killed period run again")
        assert second.has_event("job.taken_over")
        done, *later = await retention_runs(admin)
        assert done["period_start"] == killed["period_start"], "the restart fell in a later period"
        assert done["replica_id"].startswith("machine-1#") and done["replica_id"] != killed["replica_id"]
        assert done["finished_at"] is not None and done["result"]["deleted"]["telemetry_events"] == 1
        assert all(r["period_start"] > killed["period_start"] for r in later)
        ages = await admin.fetch(
            "select now() - occurred_at < interval '1 day' as fresh from public.telemetry_events"
        )
        assert [r["fresh"] for r in ages] == [True]
    finally:
        assert await second.stop() == 0
