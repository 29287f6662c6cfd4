"""The engine end to end on a real database: rows in, effects out, exactly once, in per-user order."""

from __future__ import annotations

import asyncpg

from tests.support.consumers import EffectRecorder
from tests.support.pg import TestDatabase
from tests.support.service import (
    ServiceProcess,
    insert_events,
    running_service,
    users_with_events,
    wait_until,
)


async def effect_count(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("select count(*) from public.test_effects"))


async def test_rows_reach_consumer_once_in_user_order(
    effects_db: TestDatabase, admin: asyncpg.Connection
) -> None:
    users = await users_with_events(admin, 20, 30)
    async with running_service(effects_db.service_url, [EffectRecorder()], batch_size=7):
        await insert_events(admin, users, 20)

        async def done() -> bool:
            return await effect_count(admin) == 1000

        await wait_until(done, what="1000 effects")
    bad_order = await admin.fetchval(
        """select count(*) from (
             select user_seq, row_number() over (partition by user_id order by row_id) as expected
             from public.test_effects) s where user_seq <> expected"""
    )
    assert bad_order == 0
    leases = await admin.fetchval(
        "select count(*) from floyo_pipeline.checkpoints where lease_owner is not null"
    )
    assert leases == 0


async def test_cli_subprocess_processes_rows(effects_db: TestDatabase, admin: asyncpg.Connection) -> None:
    await users_with_events(admin, 5, 10)
    recorders = {"FLOYO_CONSUMERS": "tests.support.consumers:recorders"}
    proc = ServiceProcess(effects_db.service_url, env=recorders)
    proc.start()
    await proc.wait_for_event("service.started")

    async def done() -> bool:
        return await effect_count(admin) == 50

    await wait_until(done, what="50 effects")
    assert await proc.stop() == 0
    names = [e["event"] for e in proc.events()]
    assert names[0] == "service.started" and names[-1] == "service.stopped"
