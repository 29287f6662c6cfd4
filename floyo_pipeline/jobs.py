"""Scheduled jobs (the strategy's Vercel crons): retention cleanup and the pipeline's metrics snapshot.

Every replica runs the scheduler; for each job and period the process whose insert into
`floyo_pipeline.job_runs` wins runs the job, the others skip it. Like cron, a period whose start
passed while no replica was up is not run late.

A claim belongs to a process, `<replica id>#<incarnation>` (the lease owner, whose row in
`floyo_pipeline.replicas` it heartbeats): a period still `running` under an owner that is no longer
alive (killed, or its heartbeat lapsed) is taken over and run again by a live process, at once by a
restart under the same replica id. Both jobs are safe to run twice for one period: retention deletes
what is expired, and the snapshot reuses the row an earlier run of the period wrote.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio
import asyncpg

from floyo_pipeline import metrics
from floyo_pipeline.api import Consumer
from floyo_pipeline.config import Settings
from floyo_pipeline.engine.errors import DATABASE_ERRORS
from floyo_pipeline.logs import get_logger
from floyo_pipeline.operations import status
from floyo_pipeline.queries import Q
from floyo_pipeline.retention import run_retention
from floyo_pipeline.schedule import Schedule, parse_schedule
from floyo_pipeline.service import Runtime

log = get_logger(__name__)

JobAction = Callable[[asyncpg.Connection, datetime], Awaitable[dict[str, Any]]]
Clock = Callable[[], datetime]
# Re-read the clock at least this often, so a stepped system clock cannot park the scheduler for hours.
MAX_SLEEP_SECONDS = 60.0
RETRY_SECONDS = 5.0


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Job:
    name: str
    schedule: Schedule
    action: JobAction
    last_period: datetime | None = field(default=None, compare=False)


def retention_job(consumers: Sequence[Consumer]) -> JobAction:
    """Delete what each user's data_retention_days no longer allows (floyo_pipeline.retention), in the
    streams and the tables `consumers` declare."""

    async def run(conn: asyncpg.Connection, period: datetime) -> dict[str, Any]:
        # Waits for a session holding the lock rather than skip: that session may be a killed
        # process's, whose deletions roll back; after it, what is left expired is deleted here.
        return {"deleted": await run_retention(conn, consumers, dry_run=False, wait=True)}

    return run


async def metrics_snapshot_job(conn: asyncpg.Connection, period: datetime) -> dict[str, Any]:
    """Write the pipeline's lag, throughput, error and latency figures to metrics_log (source pipeline),
    once per period: a second run of the period (its first was killed) returns the row already written."""
    async with conn.transaction():
        written = await conn.fetchrow(Q["snapshot_of_period"], period)
        if written is not None and written["id"] is not None:
            return {"metrics_log_id": written["id"], **written["metric"]}
        figures = await _snapshot_figures(conn)
        row_id = await conn.fetchval(Q["snapshot_insert"], figures.pop("taken_at"), figures)
        await conn.execute(Q["snapshot_record"], period, row_id)
    return {"metrics_log_id": row_id, **figures}


async def _snapshot_figures(conn: asyncpg.Connection) -> dict[str, Any]:
    previous = await conn.fetchrow(Q["snapshot_previous"])
    since: datetime | None = previous["ts"] if previous is not None else None
    totals = await conn.fetchrow(Q["snapshot_totals"], since)
    doc = await status(conn)
    figures: dict[str, Any] = {
        "lag_rows": sum(c["lag_rows"] for c in doc["consumers"]),
        "lag_seconds_max": max((c["lag_seconds"] for c in doc["consumers"]), default=0.0),
        "events_processed_total": int(totals["processed_total"]),
        "dead_letters_open": int(totals["dead_letters_open"]),
        "dead_letters_new": int(totals["dead_letters_new"]),
        "replicas_live": int(totals["replicas_live"]),
    }
    if previous is not None:
        seconds = (totals["taken_at"] - previous["ts"]).total_seconds()
        before = float(previous["metric"].get("events_processed_total", 0))
        if seconds > 0:
            figures["throughput_events_per_second"] = round(
                max(0.0, (figures["events_processed_total"] - before) / seconds), 3
            )
    # Latency comes from this replica's histograms (the database does not record when effects commit).
    for label, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        e2e = metrics.histogram_quantile(metrics.END_TO_END_LATENCY, q)
        if e2e is not None:
            figures[f"end_to_end_latency_{label}_seconds"] = round(e2e, 6)
        batch = metrics.histogram_quantile(metrics.BATCH_DURATION, q)
        if batch is not None:
            figures[f"batch_duration_{label}_seconds"] = round(batch, 6)
    return {"taken_at": totals["taken_at"], **figures}


def build_jobs(settings: Settings, consumers: Sequence[Consumer]) -> list[Job]:
    """The jobs whose schedule is not disabled; retention cleans the tables `consumers` declare."""
    jobs = [
        Job("retention", parse_schedule(settings.retention_schedule), retention_job(consumers)),
        Job("metrics_snapshot", parse_schedule(settings.metrics_snapshot_schedule), metrics_snapshot_job),
    ]
    return [j for j in jobs if not j.schedule.disabled]


class Scheduler:
    """Runs due jobs once per period across all replicas; a Component of the service."""

    def __init__(self, jobs: Sequence[Job], owner: str | None = None, clock: Clock = utc_now) -> None:
        self.jobs = list(jobs)
        self.owner = owner
        self.clock = clock

    async def __call__(self, runtime: Runtime) -> None:
        # The process, not only the replica id: the liveness of a claim is that of its owner's row in
        # floyo_pipeline.replicas, which the lease manager heartbeats.
        owner = self.owner or runtime.manager.owner
        if not self.jobs:
            await runtime.stopping.wait()
            return
        # As cron does: a period that began before this replica started is not run late (a fresh test
        # database or a restart at 02:05 must not trigger retention); the next boundary is. A period
        # a dead process had claimed is the exception: run_due takes it over.
        now = self.clock()
        for job in self.jobs:
            job.last_period = job.schedule.latest(now)
        log.info("jobs.scheduled", jobs={j.name: j.schedule.text for j in self.jobs})
        abandoned = False
        while not runtime.stopping.is_set():
            try:
                if not abandoned:
                    await self.abandon_older(runtime.pool)
                    abandoned = True
                await self.run_due(runtime.pool, owner)
            except DATABASE_ERRORS as err:
                # The period stays unclaimed by us: try again soon rather than at the next period.
                log.warning("jobs.retrying", error_class=type(err).__name__, delay=RETRY_SECONDS)
                with anyio.move_on_after(RETRY_SECONDS):
                    await runtime.stopping.wait()
                continue
            await self._sleep_until_next(runtime.stopping)

    async def run_due(self, pool: asyncpg.Pool, owner: str) -> list[str]:
        """Claim and run every job whose latest period has not been seen yet, and take over a latest
        period whose owner died while running it; returns the jobs run here."""
        ran: list[str] = []
        now = self.clock()
        for job in self.jobs:
            period = job.schedule.latest(now)
            if period is None:
                continue
            if period != job.last_period:
                job.last_period = period
                if await self.run_once(pool, owner, job, period):
                    ran.append(job.name)
            elif await self.take_over(pool, owner, job, period):
                ran.append(job.name)
        return ran

    async def run_once(self, pool: asyncpg.Pool, owner: str, job: Job, period: datetime) -> bool:
        """Run `job` for `period` if this process wins the claim; True if it ran (even if it failed)."""
        async with pool.acquire() as conn:
            claimed = await conn.fetchval(Q["job_claim"], job.name, period, owner)
        if claimed is None:
            metrics.JOB_RUNS.labels(job.name, "skipped").inc()
            log.info("job.skipped", job=job.name, period_start=period.isoformat(), reason="claimed")
            return False
        await self._run(pool, owner, job, period)
        return True

    async def take_over(self, pool: asyncpg.Pool, owner: str, job: Job, period: datetime) -> bool:
        """Run `job` for `period` again if its claim is still running under a dead owner."""
        async with pool.acquire() as conn:
            taken = await conn.fetchval(Q["job_take_over"], job.name, period, owner)
        if taken is None:
            return False
        log.warning("job.taken_over", job=job.name, period_start=period.isoformat(), reason="owner died")
        await self._run(pool, owner, job, period)
        return True

    async def abandon_older(self, pool: asyncpg.Pool) -> None:
        """Mark failed the earlier periods dead owners left running (only the latest is run again)."""
        now = self.clock()
        async with pool.acquire() as conn:
            for job in self.jobs:
                period = job.schedule.latest(now)
                if period is not None:
                    await conn.execute(Q["job_abandon_older"], job.name, period)

    async def _run(self, pool: asyncpg.Pool, owner: str, job: Job, period: datetime) -> None:
        log.info("job.started", job=job.name, period_start=period.isoformat())
        started = time.monotonic()
        outcome, result, error_class = "failed", None, None
        try:
            async with pool.acquire() as conn:
                result = await job.action(conn, period)
            outcome = "done"
        except anyio.get_cancelled_exc_class():
            error_class = "Cancelled"
            raise
        except Exception as err:
            error_class = type(err).__name__
            # The class only: a job's error text can quote row contents.
            log.error("job.failed", job=job.name, period_start=period.isoformat(), error_class=error_class)
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                async with pool.acquire() as conn:
                    await conn.execute(Q["job_finish"], job.name, period, owner, outcome, result, error_class)
                    if outcome == "done":
                        await conn.execute(Q["job_runs_prune"])
        metrics.JOB_RUNS.labels(job.name, outcome).inc()
        if outcome == "done":
            metrics.JOB_LAST_SUCCESS.labels(job.name).set(time.time())
            log.info(
                "job.finished",
                job=job.name,
                period_start=period.isoformat(),
                duration=round(time.monotonic() - started, 4),
            )

    async def _sleep_until_next(self, stopping: asyncio.Event) -> None:
        now = self.clock()
        upcoming = [t for j in self.jobs if (t := j.schedule.next_after(now)) is not None]
        if not upcoming:
            await stopping.wait()
            return
        delay = min(MAX_SLEEP_SECONDS, max(0.0, (min(upcoming) - now).total_seconds()))
        # Wake just after the boundary, so `latest()` already names the new period.
        with anyio.move_on_after(delay + 0.01):
            await stopping.wait()


def scheduler_component(settings: Settings, consumers: Sequence[Consumer]) -> Scheduler:
    return Scheduler(build_jobs(settings, consumers))
