"""Guarantees G1-G6 (docs/guarantees.md) on a real database, with the engine running in this process."""

from __future__ import annotations

import asyncpg
import pytest

from floyo_pipeline.connections import connect
from floyo_pipeline.engine.batch import BatchRunner, ReadLimits
from floyo_pipeline.engine.checkpoints import CheckpointStore
from floyo_pipeline.engine.errors import LeaseLost
from floyo_pipeline.engine.leases import EngineConfig, LeaseManager
from floyo_pipeline.engine.wakeups import LISTEN_APPLICATION_NAME, WakeHub
from floyo_pipeline.metrics import REGISTRY
from floyo_pipeline.operations import replay
from tests.support.consumers import (
    EffectRecorder,
    assert_exactly_once_in_order,
    count_effects,
    insert_poison,
    recorded_effects,
    wait_for_effects,
)
from tests.support.pg import TestDatabase
from tests.support.service import insert_events, make_users, running_service, users_with_events, wait_until


async def test_sequence_gap_row_committed_late_is_processed(
    effects_db: TestDatabase, admin: asyncpg.Connection
) -> None:
    (user,) = await make_users(admin, 1)
    slow = await connect(effects_db.admin_url)
    async with running_service(effects_db.service_url, [EffectRecorder()]):
        tx = slow.transaction()
        await tx.start()
        row1 = await slow.fetchval(
            "insert into public.telemetry_events (user_id, occurred_at, app_id, event_type)"
            " values ($1, now(), 'a', 'app_focused') returning id",
            user,
        )
        row2 = await admin.fetchval(
            "insert into public.telemetry_events (user_id, occurred_at, app_id, event_type)"
            " values ($1, now(), 'b', 'app_focused') returning id",
            user,
        )
        assert row1 < row2
        await wait_for_effects(admin, 1)
        assert [e[0] for e in await recorded_effects(admin)] == [row2]
        await tx.commit()
        await wait_for_effects(admin, 2)
    assert sorted(e[0] for e in await recorded_effects(admin)) == [row1, row2]
    await slow.close()


async def test_rows_inserted_while_down_are_processed_after_start(
    effects_db: TestDatabase, admin: asyncpg.Connection
) -> None:
    users = await users_with_events(admin, 30, 20)
    async with running_service(effects_db.service_url, [EffectRecorder()]):
        await wait_for_effects(admin, 600)
    await insert_events(admin, users, 10)  # while stopped
    async with running_service(effects_db.service_url, [EffectRecorder()]):
        await wait_for_effects(admin, 900)
    await assert_exactly_once_in_order(admin, "recorder", 900)


async def test_dropped_listen_connection_still_processes_rows(
    effects_db: TestDatabase, admin: asyncpg.Connection
) -> None:
    users = await make_users(admin, 10)
    # A long poll interval, so the catch-up after the reconnect is what finds the rows.
    async with running_service(effects_db.service_url, [EffectRecorder()], poll_interval_seconds=300):
        await insert_events(admin, users, 5)
        await wait_for_effects(admin, 50)

        async def listening() -> bool:
            return bool(
                await admin.fetchval(
                    "select count(*) from pg_stat_activity where application_name = $1",
                    LISTEN_APPLICATION_NAME,
                )
            )

        await wait_until(listening, what="the LISTEN connection")
        old_pids = await admin.fetch(
            "select pid from pg_stat_activity where application_name = $1", LISTEN_APPLICATION_NAME
        )
        assert len(old_pids) == 1
        assert await admin.fetchval("select pg_terminate_backend($1)", old_pids[0]["pid"])
        await insert_events(admin, users, 5)  # the notification for these goes nowhere

        async def reconnected() -> bool:
            pids = await admin.fetch(
                "select pid from pg_stat_activity where application_name = $1", LISTEN_APPLICATION_NAME
            )
            return bool(pids) and pids != old_pids

        await wait_until(reconnected, what="a new LISTEN connection")
        await wait_for_effects(admin, 100)
    await assert_exactly_once_in_order(admin, "recorder", 100)


async def test_batch_size_does_not_change_effects(
    effects_db: TestDatabase, admin: asyncpg.Connection
) -> None:
    await users_with_events(admin, 25, 20)
    async with running_service(effects_db.service_url, [EffectRecorder("one")], batch_size=1):
        await wait_for_effects(admin, 500, "one")
    async with running_service(effects_db.service_url, [EffectRecorder("many")], batch_size=500):
        await wait_for_effects(admin, 500, "many")
    one = await recorded_effects(admin, "one")
    many = await recorded_effects(admin, "many")
    assert len(one) == 500
    assert one == many


async def test_fenced_replica_cannot_commit(effects_db: TestDatabase, admin: asyncpg.Connection) -> None:
    await users_with_events(admin, 1, 3)
    partition = await admin.fetchval(
        "select floyo_pipeline.user_partition(user_id) from public.telemetry_events limit 1"
    )
    service = await connect(effects_db.service_url)
    pool = await asyncpg.create_pool(effects_db.service_url, min_size=1, max_size=2)
    consumer = EffectRecorder()
    manager = LeaseManager(pool, [consumer], EngineConfig("replica-a", 10, 30, 1), WakeHub())
    await manager.prepare()
    store_a = CheckpointStore("replica-a#1", "replica-a")
    claimed = await store_a.claim(service, ["recorder"], 30.0, 64, take_over_predecessors=False)
    lease_a = next(lease for lease in claimed if lease.partition == partition)
    # Replica B takes the partition over after A's lease expired (A was paused, say).
    await admin.execute(
        "update floyo_pipeline.checkpoints set lease_expires_at = now() - interval '1 second'"
        " where consumer = 'recorder' and partition = $1",
        partition,
    )
    taken = await CheckpointStore("replica-b#1", "replica-b").claim(service, ["recorder"], 30.0, 64, False)
    assert [lease.partition for lease in taken] == [partition]
    with pytest.raises(LeaseLost):
        runner = BatchRunner("telemetry_events", [consumer], ReadLimits(10), store_a)
        await runner.run(service, {("recorder", partition): lease_a})
    assert await count_effects(admin) == 0
    position = await admin.fetchval(
        "select position_id from floyo_pipeline.checkpoints where consumer = 'recorder' and partition = $1",
        partition,
    )
    assert position == 0
    await pool.close()
    await service.close()


async def test_poison_row_is_dead_lettered_and_the_stream_goes_on(
    effects_db: TestDatabase, admin: asyncpg.Connection
) -> None:
    users = await users_with_events(admin, 3, 4)
    poison_id = await insert_poison(admin, users[0])
    await insert_events(admin, users, 4)
    async with running_service(effects_db.service_url, [EffectRecorder()], batch_size=50):
        await wait_for_effects(admin, 24)

        async def dead_lettered() -> bool:
            return bool(await admin.fetchval("select count(*) from floyo_pipeline.dead_letters"))

        await wait_until(dead_lettered, what="a dead letter")
    dead = await admin.fetch("select * from floyo_pipeline.dead_letters")
    assert len(dead) == 1
    assert (dead[0]["row_id"], dead[0]["consumer"], dead[0]["error_class"], dead[0]["status"]) == (
        poison_id,
        "recorder",
        "PoisonError",
        "open",
    )
    assert f"row {poison_id} is poison" in dead[0]["error_message"]
    assert dead[0]["attempts"] >= 2
    assert await count_effects(admin) == 24
    assert not await admin.fetchval("select count(*) from public.test_effects where row_id = $1", poison_id)


async def test_transient_error_is_retried_not_dead_lettered(
    effects_db: TestDatabase, admin: asyncpg.Connection
) -> None:
    await users_with_events(admin, 4, 5)
    # Lock the effects table so the handler's insert waits, then kill that backend mid-batch:
    # the connection loss is transient, so the batch is retried and nothing is dead-lettered.
    locker = await connect(effects_db.admin_url)
    tx = locker.transaction()
    await tx.start()
    await locker.execute("lock table public.test_effects in access exclusive mode")
    async with running_service(effects_db.service_url, [EffectRecorder()], max_concurrency=1):

        async def blocked() -> bool:
            return bool(
                await admin.fetchval(
                    "select count(*) from pg_stat_activity where wait_event_type = 'Lock'"
                    " and query like '%test_effects%' and usename = 'floyo_service'"
                )
            )

        await wait_until(blocked, what="a batch waiting on the lock")
        waiting = await admin.fetch(
            "select pid from pg_stat_activity where wait_event_type = 'Lock' and usename = 'floyo_service'"
        )
        for row in waiting:
            await admin.execute("select pg_terminate_backend($1)", row["pid"])
        await tx.rollback()
        await wait_for_effects(admin, 20)
    assert await admin.fetchval("select count(*) from floyo_pipeline.dead_letters") == 0
    await assert_exactly_once_in_order(admin, "recorder", 20)
    await locker.close()


async def test_replay_from_start_reproduces_effects(
    effects_db: TestDatabase, admin: asyncpg.Connection
) -> None:
    await users_with_events(admin, 12, 15)
    async with running_service(effects_db.service_url, [EffectRecorder()], batch_size=13):
        await wait_for_effects(admin, 180)
    before = await recorded_effects(admin)
    await admin.execute("truncate public.test_effects")
    service = await connect(effects_db.service_url)
    assert await replay(service, "recorder", None, force=False) == 64
    await service.close()
    async with running_service(effects_db.service_url, [EffectRecorder()], batch_size=29):
        await wait_for_effects(admin, 180)
    after = await recorded_effects(admin)
    assert after == before


async def test_unsubscribed_event_types_are_counted_not_processed(
    effects_db: TestDatabase, admin: asyncpg.Connection
) -> None:
    users = await users_with_events(admin, 2, 3, event_type="file_opened")
    await insert_events(admin, users, 3, event_type="something_new")
    only_files = EffectRecorder("files", frozenset({"file_opened"}))
    unrouted_before = unrouted("files")
    async with running_service(effects_db.service_url, [only_files]):
        await wait_for_effects(admin, 6, "files")

        async def all_read() -> bool:
            total = await admin.fetchval(
                "select sum(processed_total) from floyo_pipeline.checkpoints where consumer = 'files'"
            )
            return bool(total == 12)

        await wait_until(all_read, what="every row read")
    assert await count_effects(admin, "files") == 6
    assert unrouted("files") - unrouted_before == 6


def unrouted(consumer: str) -> float:
    value = REGISTRY.get_sample_value(
        "floyo_pipeline_events_total",
        {"stream": "telemetry_events", "consumer": consumer, "outcome": "unrouted"},
    )
    return value or 0.0


async def test_replay_since_reprocesses_only_later_rows(
    effects_db: TestDatabase, admin: asyncpg.Connection
) -> None:
    users = await users_with_events(admin, 10, 5)
    since = await admin.fetchval("select clock_timestamp()")
    await insert_events(admin, users, 3)
    async with running_service(effects_db.service_url, [EffectRecorder()]):
        await wait_for_effects(admin, 80)
    later = await admin.fetchval("select count(*) from public.telemetry_events where created_at >= $1", since)
    assert later == 30
    await admin.execute(
        "delete from public.test_effects"
        " where row_id in (select id from public.telemetry_events where created_at >= $1)",
        since,
    )
    service = await connect(effects_db.service_url)
    assert await replay(service, "recorder", since, force=False) > 0
    await service.close()
    async with running_service(effects_db.service_url, [EffectRecorder()]):
        await wait_for_effects(admin, 80)
    # Earlier rows were not handed over again (a second effect row would have been a dead letter).
    assert await admin.fetchval("select count(*) from floyo_pipeline.dead_letters") == 0
    await assert_exactly_once_in_order(admin, "recorder", 80)
