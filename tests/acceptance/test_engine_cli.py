"""Acceptance tests of the engine through the real CLI in subprocesses: kill -9, replicas, signals."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import subprocess
import time

import asyncpg

from tests.support.consumers import (
    EffectRecorder,
    assert_exactly_once_in_order,
    count_effects,
    insert_poison,
    recorded_effects,
    wait_for_effects,
)
from tests.support.pg import TestDatabase
from tests.support.service import (
    ServiceProcess,
    fresh_env,
    insert_events,
    make_users,
    run_cli,
    running_service,
    users_with_events,
    wait_until,
)

RECORDERS = {"FLOYO_CONSUMERS": "tests.support.consumers:recorders"}
# A lease TTL far longer than a test: only a takeover by a new incarnation of machine-1 can resume.
MACHINE_1 = {"FLOYO_REPLICA_ID": "machine-1", "FLOYO_LEASE_TTL_SECONDS": "600"}


def service(db: TestDatabase, *args: str, **env: str) -> ServiceProcess:
    return ServiceProcess(db.service_url, *args, env={**RECORDERS, **env})


def cli(db: TestDatabase, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, env=fresh_env(DATABASE_URL=db.service_url, **RECORDERS))


async def leases_by_owner(conn: asyncpg.Connection) -> dict[str | None, int]:
    rows = await conn.fetch(
        "select split_part(lease_owner, '#', 1) as lease_owner, count(*) as n from floyo_pipeline.checkpoints"
        " where lease_expires_at > now() or lease_owner is null group by 1"
    )
    return {r["lease_owner"]: r["n"] for r in rows}


async def test_kill_9_repeatedly_gives_the_same_effects_as_an_uninterrupted_run(
    effects_db: TestDatabase, admin: asyncpg.Connection
) -> None:
    users = await make_users(admin, 40)
    total = await insert_events(admin, users, 100)
    rng = random.Random(7)
    for round_ in range(4):
        proc = service(
            effects_db, FLOYO_BATCH_SIZE="10", FLOYO_MAX_CONCURRENCY="2", FLOYO_TEST_HANDLER_DELAY="0.02"
        ).start()
        await proc.wait_for_event("lease.acquired")
        await asyncio.sleep(rng.uniform(0.2, 0.8))
        proc.kill()
        if round_ == 1:
            await insert_events(admin, users, 10)  # more rows arrive while it is down
            total += 400
    done = await count_effects(admin)
    assert done < total, "the crash rounds should leave work for the final run"
    proc = service(effects_db, FLOYO_BATCH_SIZE="40").start()
    await wait_for_effects(admin, total)
    assert await proc.stop() == 0
    await assert_exactly_once_in_order(admin, "recorder", total)
    crashed = await recorded_effects(admin)
    async with running_service(effects_db.service_url, [EffectRecorder("reference")], batch_size=500):
        await wait_for_effects(admin, total, "reference")
    reference = await recorded_effects(admin, "reference")
    assert crashed == reference


async def test_two_replicas_share_partitions_and_survive_a_kill(
    effects_db: TestDatabase, admin: asyncpg.Connection
) -> None:
    users = await make_users(admin, 64)
    total = await insert_events(admin, users, 10)
    a = service(effects_db, FLOYO_REPLICA_ID="replica-a", FLOYO_BATCH_SIZE="20").start()
    b = service(effects_db, FLOYO_REPLICA_ID="replica-b", FLOYO_BATCH_SIZE="20").start()

    async def spread() -> bool:
        owners = await leases_by_owner(admin)
        return owners.get("replica-a", 0) == 32 and owners.get("replica-b", 0) == 32

    await wait_until(spread, 30, what="64 leases split 32/32 between the replicas")
    for _ in range(5):
        total += await insert_events(admin, users, 4)
        await asyncio.sleep(0.05)
    a.kill()
    for _ in range(5):
        total += await insert_events(admin, users, 4)

    async def b_owns_all() -> bool:
        return (await leases_by_owner(admin)).get("replica-b", 0) == 64

    await wait_until(b_owns_all, 30, what="replica-b taking over every partition")
    await wait_for_effects(admin, total)
    assert await b.stop() == 0
    await assert_exactly_once_in_order(admin, "recorder", total)
    owners = await admin.fetch("select distinct lease_owner from floyo_pipeline.checkpoints")
    assert [r["lease_owner"] for r in owners] == [None]


async def test_sigterm_during_a_batch_exits_0_and_releases_leases(
    effects_db: TestDatabase, admin: asyncpg.Connection
) -> None:
    await users_with_events(admin, 8, 50)
    proc = service(effects_db, FLOYO_BATCH_SIZE="25", FLOYO_TEST_HANDLER_DELAY="0.3").start()
    await proc.wait_for_event("batch.committed")
    proc.signal(signal.SIGTERM)
    assert await asyncio.to_thread(proc.wait, 30) == 0
    names = [e["event"] for e in proc.events()]
    assert names.index("service.stopping") < names.index("service.stopped")
    assert (
        await admin.fetchval("select count(*) from floyo_pipeline.checkpoints where lease_owner is not null")
        == 0
    )
    processed = await admin.fetchval("select sum(processed_total) from floyo_pipeline.checkpoints")
    assert await count_effects(admin) == processed  # each batch committed whole or not at all
    # Released, not merely expired: another replica takes every partition at once.
    other = service(effects_db, FLOYO_REPLICA_ID="replica-next", FLOYO_LEASE_TTL_SECONDS="600").start()
    await other.wait_for_event("lease.acquired")
    assert (await leases_by_owner(admin)).get("replica-next") == 64
    await wait_for_effects(admin, 400)
    assert await other.stop() == 0
    await assert_exactly_once_in_order(admin, "recorder", 400)


async def test_kill_9_then_a_restart_under_the_same_replica_id_resumes_at_once(
    effects_db: TestDatabase, admin: asyncpg.Connection
) -> None:
    users = await users_with_events(admin, 8, 25)
    first = service(effects_db, **MACHINE_1).start()
    await wait_for_effects(admin, 200)
    first.kill()
    await insert_events(admin, users, 25)
    restarted = time.monotonic()
    again = service(effects_db, **MACHINE_1).start()
    await wait_for_effects(admin, 400, timeout=30)
    print(f"restart under the same replica id: caught up {time.monotonic() - restarted:.2f}s after the start")
    owners = await admin.fetch("select distinct lease_owner from floyo_pipeline.checkpoints")
    assert len(owners) == 1 and owners[0]["lease_owner"].startswith("machine-1#")
    assert await again.stop() == 0
    await assert_exactly_once_in_order(admin, "recorder", 400)


async def test_a_drain_past_its_grace_releases_the_leases_and_a_restart_resumes(
    effects_db: TestDatabase, admin: asyncpg.Connection
) -> None:
    await users_with_events(admin, 4, 10)
    stuck = service(
        effects_db,
        FLOYO_BATCH_SIZE="5",
        FLOYO_TEST_HANDLER_DELAY="60",
        FLOYO_SHUTDOWN_GRACE_SECONDS="2",
        **MACHINE_1,
    ).start()
    await stuck.wait_for_event("lease.acquired")
    await asyncio.sleep(0.5)  # a batch is now sleeping in its handler, far past the grace
    stuck.signal(signal.SIGTERM)
    assert await asyncio.to_thread(stuck.wait, 15) == 0
    assert stuck.has_event("lease.drain_abandoned")
    assert (
        await admin.fetchval("select count(*) from floyo_pipeline.checkpoints where lease_owner is not null")
        == 0
    )
    assert await admin.fetchval("select count(*) from floyo_pipeline.replicas") == 0
    assert await count_effects(admin) == 0  # the abandoned batch rolled back whole
    again = service(effects_db, **MACHINE_1).start()
    await wait_for_effects(admin, 40, timeout=30)
    assert await again.stop() == 0
    await assert_exactly_once_in_order(admin, "recorder", 40)


async def test_second_signal_exits_at_once(effects_db: TestDatabase, admin: asyncpg.Connection) -> None:
    await users_with_events(admin, 2, 20)
    proc = service(
        effects_db, FLOYO_BATCH_SIZE="5", FLOYO_TEST_HANDLER_DELAY="5", FLOYO_SHUTDOWN_GRACE_SECONDS="60"
    ).start()
    await proc.wait_for_event("lease.acquired")
    await asyncio.sleep(0.5)  # a batch is now sleeping in its handler
    proc.signal(signal.SIGTERM)
    await proc.wait_for_event("service.stopping")
    proc.signal(signal.SIGINT)
    assert await asyncio.to_thread(proc.wait, 10) == 130
    assert proc.has_event("service.forced_exit")


async def test_dead_letter_retry_and_replay_through_the_cli(
    effects_db: TestDatabase, admin: asyncpg.Connection
) -> None:
    users = await users_with_events(admin, 2, 3)
    poison = await insert_poison(admin, users[0])
    proc = service(effects_db).start()
    await wait_for_effects(admin, 6)

    async def dead_lettered() -> bool:
        return bool(await admin.fetchval("select count(*) from floyo_pipeline.dead_letters"))

    await wait_until(dead_lettered, what="the poison row in dead letters")
    refused = cli(effects_db, "replay", "--consumer", "recorder", "--from-start")
    assert refused.returncode == 1
    assert "held by a running replica" in refused.stderr
    assert await proc.stop() == 0

    listed = cli(effects_db, "dead-letters", "list")
    assert listed.returncode == 0
    dead_id = await admin.fetchval("select id from floyo_pipeline.dead_letters")
    assert f"row {poison}" in listed.stdout and "PoisonError" in listed.stdout
    still = cli(effects_db, "dead-letters", "retry", str(dead_id))
    assert still.returncode == 1 and "still failing" in still.stdout
    await admin.execute("insert into public.test_cured (row_id) values ($1)", poison)
    fixed = cli(effects_db, "dead-letters", "retry", str(dead_id))
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert (
        await admin.fetchval("select status from floyo_pipeline.dead_letters where id = $1", dead_id)
        == "retried"
    )
    assert await admin.fetchval("select count(*) from public.test_effects where row_id = $1", poison) == 1

    before = await recorded_effects(admin)
    await admin.execute("truncate public.test_effects")
    replayed = cli(effects_db, "replay", "--consumer", "recorder", "--from-start")
    assert replayed.returncode == 0 and "moved 64 checkpoint(s)" in replayed.stdout
    proc = service(effects_db).start()
    await wait_for_effects(admin, 7)  # the cured row now passes on the first try
    assert await proc.stop() == 0
    after = await recorded_effects(admin)
    assert {r[0] for r in after} == {r[0] for r in before}


async def test_status_reports_positions_lag_and_dead_letters(
    effects_db: TestDatabase, admin: asyncpg.Connection
) -> None:
    users = await users_with_events(admin, 3, 4)
    proc = service(effects_db).start()
    await wait_for_effects(admin, 12)
    assert await proc.stop() == 0
    await insert_events(admin, users, 2)
    result = cli(effects_db, "status", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    (summary,) = doc["consumers"]
    assert (summary["consumer"], summary["stream"], summary["lag_rows"], summary["processed_total"]) == (
        "recorder",
        "telemetry_events",
        6,
        12,
    )
    assert len(doc["partitions"]) == 64
    assert sum(p["lag_rows"] for p in doc["partitions"]) == 6
    assert all(p["lease_owner"] is None for p in doc["partitions"])


async def test_replay_refuses_an_unknown_consumer_and_one_that_never_ran(
    effects_db: TestDatabase, admin: asyncpg.Connection
) -> None:
    unknown = cli(effects_db, "replay", "--consumer", "nosuch", "--from-start")
    assert unknown.returncode == 1, unknown.stdout + unknown.stderr
    assert "unknown consumer 'nosuch': the consumers are recorder" in unknown.stderr
    assert "moved" not in unknown.stdout
    never_ran = cli(effects_db, "replay", "--consumer", "recorder", "--from-start")
    assert never_ran.returncode == 1
    assert "'recorder' has no checkpoints yet (it has never run)" in never_ran.stderr
    assert await admin.fetchval("select count(*) from floyo_pipeline.checkpoints") == 0


async def test_dead_letters_discard_says_what_it_could_not_discard(
    effects_db: TestDatabase, admin: asyncpg.Connection
) -> None:
    dead_id = await admin.fetchval(
        "insert into floyo_pipeline.dead_letters"
        " (consumer, stream, partition, row_id, error_class, error_message, attempts)"
        " values ('recorder', 'telemetry_events', 3, 42, 'PoisonError', 'bad row', 3) returning id"
    )
    listed = cli(effects_db, "dead-letters")  # no action: list
    assert listed.returncode == 0, listed.stderr
    assert "row 42 PoisonError: bad row" in listed.stdout and "1 open dead letter(s)" in listed.stdout
    missing = dead_id + 999
    done = cli(effects_db, "dead-letters", "discard", str(dead_id), str(missing))
    assert done.returncode == 1
    assert done.stdout.splitlines() == [
        f"dead letter {dead_id}: discarded",
        f"dead letter {missing}: does not exist",
    ]
    again = cli(effects_db, "dead-letters", "discard", str(dead_id))
    assert again.returncode == 1 and again.stdout.strip() == f"dead letter {dead_id}: already discarded"
    statuses = await admin.fetch("select id, status from floyo_pipeline.dead_letters")
    assert [tuple(r) for r in statuses] == [(dead_id, "discarded")]
    assert "0 open dead letter(s)" in cli(effects_db, "dead-letters").stdout
