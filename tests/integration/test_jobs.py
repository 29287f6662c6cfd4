"""Scheduled jobs: schedule parsing, one run per job and period across replicas, snapshot rows."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from consumers import all_consumers
from floyo_pipeline.config import ConfigError, load_settings
from floyo_pipeline.connections import create_pool
from floyo_pipeline.jobs import Scheduler, build_jobs
from floyo_pipeline.schedule import ScheduleError, parse_schedule
from tests.support.consumers import EffectRecorder
from tests.support.ops import serving
from tests.support.pg import TestDatabase
from tests.support.service import fresh_env, run_cli, wait_until


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_default_schedules_fire_when_documented() -> None:
    retention = parse_schedule("0 2 * * *")
    assert retention.latest(at("2026-03-05T01:59:59")) == at("2026-03-04T02:00")
    assert retention.latest(at("2026-03-05T02:00:00")) == at("2026-03-05T02:00")
    assert retention.next_after(at("2026-03-05T02:00:00")) == at("2026-03-06T02:00")
    snapshot = parse_schedule("0 */6 * * *")
    assert snapshot.latest(at("2026-03-05T13:10")) == at("2026-03-05T12:00")
    assert snapshot.next_after(at("2026-03-05T18:00")) == at("2026-03-06T00:00")


def test_schedule_fields_lists_ranges_and_weekdays() -> None:
    s = parse_schedule("15,45 9-17/4 * * 1-5")  # weekdays at 9, 13, 17
    assert s.next_after(at("2026-11-27T17:45")) == at("2026-11-30T09:15")  # Friday → Monday
    # Day of month and day of week both restricted: either one matches (Vixie cron).
    either = parse_schedule("0 0 1 * 0")
    assert either.next_after(at("2026-11-26T12:00")) == at("2026-11-29T00:00")  # a Sunday before the 1st
    assert parse_schedule("0 0 * * 7").latest(at("2026-11-30T00:00")) == at("2026-11-29T00:00")
    leap = parse_schedule("0 0 29 2 *")
    assert leap.next_after(at("2026-03-01T00:00")) == at("2028-02-29T00:00")
    every = parse_schedule("@every 90s")
    assert every.latest(at("2026-01-01T00:02:00")) == at("2026-01-01T00:01:30")
    assert every.next_after(at("2026-01-01T00:01:30")) == at("2026-01-01T00:03:00")
    off = parse_schedule("0")
    assert off.disabled and off.latest(at("2026-01-01T00:00")) is None


@pytest.mark.parametrize(
    "text", ["60 * * * *", "* * *", "*/0 * * * *", "0 0 31 2 *", "@every soon", "a b c d e", "0 24 * * *"]
)
def test_bad_schedules_are_refused(text: str) -> None:
    with pytest.raises(ScheduleError):
        parse_schedule(text)
    with pytest.raises(ConfigError, match="FLOYO_RETENTION_SCHEDULE"):
        load_settings(retention_schedule=text)


def test_bad_schedule_is_one_line_and_exit_2() -> None:
    result = run_cli("healthcheck", env=fresh_env(FLOYO_METRICS_SNAPSHOT_SCHEDULE="61 * * * *"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "FLOYO_METRICS_SNAPSHOT_SCHEDULE" in lines[0] and "minute" in lines[0]


def test_zero_disables_a_job() -> None:
    names = [j.name for j in build_jobs(load_settings(retention_schedule="0"), all_consumers())]
    assert names == ["metrics_snapshot"]


async def test_two_replicas_run_each_job_once_per_period(
    database: TestDatabase, admin: asyncpg.Connection
) -> None:
    """Two schedulers on one driven clock race for three periods; each period runs exactly once."""
    await admin.execute(
        """insert into floyo_pipeline.checkpoints (consumer, stream, partition, processed_total)
           values ('c', 'telemetry_events', 0, 10)"""
    )
    await admin.execute(
        """insert into floyo_pipeline.dead_letters
             (consumer, stream, partition, row_id, error_class, error_message, attempts)
           values ('c', 'telemetry_events', 0, 1, 'E', 'x', 1)"""
    )
    settings = load_settings(retention_schedule="0 2 * * *", metrics_snapshot_schedule="0 */6 * * *")
    now = at("2026-03-05T02:00:30")
    replicas = [
        Scheduler(build_jobs(settings, all_consumers()), clock=lambda: now),
        Scheduler(build_jobs(settings, all_consumers()), clock=lambda: now),
    ]
    pools = [await create_pool(database.service_url, size=2) for _ in replicas]
    try:
        ran: list[list[str]] = []
        for step, moment in enumerate(
            [at("2026-03-05T02:00:30"), at("2026-03-05T06:00:01"), at("2026-03-06T02:00:00")]
        ):
            now = moment
            if step == 1:
                await admin.execute("update floyo_pipeline.checkpoints set processed_total = 40")
            results = await asyncio.gather(
                *(
                    s.run_due(pool, f"replica-{i}")
                    for i, (s, pool) in enumerate(zip(replicas, pools, strict=True))
                )
            )
            ran.append(sorted(results[0] + results[1]))
            # The same period again (a replica waking twice) runs nothing more.
            again = await asyncio.gather(
                *(s.run_due(pool, "late") for s, pool in zip(replicas, pools, strict=True))
            )
            assert again == [[], []]
    finally:
        for pool in pools:
            await pool.close()

    # 02:00 (both jobs due), 06:00 (snapshot), next day 02:00 (both; the 12:00 and 18:00 periods were
    # never reached by the driven clock, so they are not run late).
    assert ran == [["metrics_snapshot", "retention"], ["metrics_snapshot"], ["metrics_snapshot", "retention"]]
    runs = await admin.fetch(
        "select job, period_start, replica_id, status, result from floyo_pipeline.job_runs order by 2, 1"
    )
    assert [(r["job"], r["period_start"]) for r in runs] == [
        ("metrics_snapshot", at("2026-03-05T00:00")),
        ("retention", at("2026-03-05T02:00")),
        ("metrics_snapshot", at("2026-03-05T06:00")),
        ("metrics_snapshot", at("2026-03-06T00:00")),
        ("retention", at("2026-03-06T02:00")),
    ]
    assert {r["replica_id"] for r in runs} <= {"replica-0", "replica-1"}
    snapshots = [r for r in runs if r["job"] == "metrics_snapshot"]
    assert all(r["status"] == "done" for r in runs)
    rows = await admin.fetch("select id, source, metric from public.metrics_log order by id")
    assert [r["id"] for r in rows] == [r["result"]["metrics_log_id"] for r in snapshots]
    assert all(r["source"] == "pipeline" for r in rows)
    first, second = rows[0]["metric"], rows[1]["metric"]
    assert first["events_processed_total"] == 10 and first["dead_letters_open"] == 1
    assert first["lag_rows"] == 0 and "throughput_events_per_second" not in first
    assert second["events_processed_total"] == 40 and second["throughput_events_per_second"] > 0
    assert all(isinstance(v, int | float) for v in second.values())


async def test_two_running_services_share_jobs_on_a_short_interval(
    database: TestDatabase, admin: asyncpg.Connection
) -> None:
    """Two real replicas with `@every 1s` schedules: every period is run by one of them, once."""
    schedules: dict[str, Any] = {"metrics_snapshot_schedule": "@every 1s", "retention_schedule": "@every 1s"}
    async with (
        serving(database.service_url, [EffectRecorder()], with_jobs=True, replica_id="a", **schedules),
        serving(database.service_url, [EffectRecorder()], with_jobs=True, replica_id="b", **schedules),
    ):

        async def three_snapshots() -> bool:
            n = await admin.fetchval(
                """select count(*) from floyo_pipeline.job_runs
                   where job = 'metrics_snapshot' and status = 'done'"""
            )
            return int(n) >= 3

        await wait_until(three_snapshots, what="three snapshot periods")
    runs = await admin.fetch(
        "select job, period_start, replica_id, status, result from floyo_pipeline.job_runs"
    )
    # Claimed by the processes, `<replica id>#<incarnation>`.
    assert {r["replica_id"].split("#")[0] for r in runs} <= {"a", "b"}
    assert all(r["period_start"].microsecond == 0 for r in runs)
    done = [r for r in runs if r["job"] == "metrics_snapshot" and r["status"] == "done"]
    logged = await admin.fetch("select id from public.metrics_log where source = 'pipeline'")
    assert sorted(r["id"] for r in logged) == sorted(r["result"]["metrics_log_id"] for r in done)
    # No period is claimed twice (the primary key) and none is left half-done by a clean stop.
    assert not [r for r in runs if r["status"] == "running"]
    retention = [r for r in runs if r["job"] == "retention"]
    assert retention and all(r["status"] == "done" for r in retention)
    assert all("telemetry_events" in r["result"]["deleted"] for r in retention)


def test_period_boundaries_are_the_same_for_every_replica() -> None:
    s = parse_schedule("@every 6h")
    t = at("2026-03-05T13:10")
    assert s.latest(t) == s.latest(t + timedelta(minutes=30)) == at("2026-03-05T12:00")


async def test_a_period_taken_over_from_a_dead_owner_runs_again_without_a_second_snapshot(
    database: TestDatabase, admin: asyncpg.Connection
) -> None:
    """A claim stays `running` when its process dies: a live process takes it over (not while the
    owner's replica row is alive), and the snapshot reuses the row the dead run had written."""
    settings = load_settings(retention_schedule="0", metrics_snapshot_schedule="0 */6 * * *")
    now = at("2026-03-05T06:00:30")
    period = at("2026-03-05T06:00")
    dead, alive = (
        Scheduler(build_jobs(settings, all_consumers()), clock=lambda: now),
        Scheduler(build_jobs(settings, all_consumers()), clock=lambda: now),
    )
    (job,) = dead.jobs
    await admin.execute(
        "insert into floyo_pipeline.replicas (replica_id, expires_at) values"
        " ('m1#dead', now() + interval '1 hour'), ('m2#live', now() + interval '1 hour')"
    )
    pool = await create_pool(database.service_url, size=2)
    try:
        # The dead process claimed the period and wrote its snapshot, then died before finishing.
        async with pool.acquire() as conn:
            assert await conn.fetchval(
                "insert into floyo_pipeline.job_runs (job, period_start, replica_id)"
                " values ('metrics_snapshot', $1, 'm1#dead') returning job",
                period,
            )
            written = await job.action(conn, period)
        for s in (dead, alive):
            for j in s.jobs:
                j.last_period = period
        assert await alive.run_due(pool, "m2#live") == []  # its owner's heartbeat is alive
        await admin.execute(
            "update floyo_pipeline.replicas set expires_at = now() where replica_id = 'm1#dead'"
        )
        assert await alive.run_due(pool, "m2#live") == ["metrics_snapshot"]
        assert await alive.run_due(pool, "m2#live") == []
        # An earlier period a dead owner left running is not run late: it is marked failed.
        await admin.execute(
            "insert into floyo_pipeline.job_runs (job, period_start, replica_id)"
            " values ('metrics_snapshot', $1, 'm1#dead')",
            at("2026-03-05T00:00"),
        )
        await alive.abandon_older(pool)
        assert (
            await admin.fetchval(
                "select status || '/' || error_class from floyo_pipeline.job_runs where period_start = $1",
                at("2026-03-05T00:00"),
            )
            == "failed/OwnerDied"
        )
    finally:
        await pool.close()
    (run,) = await admin.fetch(
        "select replica_id, status, result from floyo_pipeline.job_runs where period_start = $1", period
    )
    assert (run["replica_id"], run["status"]) == ("m2#live", "done")
    assert run["result"]["metrics_log_id"] == written["metrics_log_id"]
    assert await admin.fetchval("select count(*) from public.metrics_log where source = 'pipeline'") == 1
