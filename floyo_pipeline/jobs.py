"""Scheduled jobs (the strategy's Vercel crons): retention cleanup and the pipeline's metrics snapshot.

Every replica runs the scheduler; for each job and period the replica whose insert into
`floyo_pipeline.job_runs` wins runs the job, the others skip it. Like cron, a period whose start
passed while no replica was up is not run late.
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
from floyo_pipeline.retention import LOCK_NOT_ACQUIRED, run_retention
from floyo_pipeline.schedule import Schedule, parse_schedule
from floyo_pipeline.service import Runtime, default_replica_id

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
        deleted = await run_retention(conn, consumers, dry_run=False)
        # A hand-run `floyo-pipeline retention` holding the lock is doing this very work: not a failure.
        return {"deleted": deleted, "lock_not_acquired": LOCK_NOT_ACQUIRED in deleted}

    return run


async def metrics_snapshot_job(conn: asyncpg.Connection, period: datetime) -> dict[str, Any]:
    """Write the pipeline's lag, throughput, error and latency figures to metrics_log (source pipeline)."""
    previous = await conn.fetchrow(Q["snapshot_previous"])
    since: datetime | None = previous["ts"] if previous is not None else None
    totals = await conn.fetchrow(Q["snapshot_totals"], since)
    doc = await status(conn)
    figures: dict[str, float | int] = {
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
    row_id = await conn.fetchval(Q["snapshot_insert"], totals["taken_at"], figures)
    return {"metrics_log_id": row_id, **figures}


def build_jobs(settings: Settings, consumers: Sequence[Consumer]) -> list[Job]:
    """The jobs whose schedule is not disabled; retention cleans the tables `consumers` declare."""
    jobs = [
        Job("retention", parse_schedule(settings.retention_schedule), retention_job(consumers)),
        Job("metrics_snapshot", parse_schedule(settings.metrics_snapshot_schedule), metrics_snapshot_job),
    ]
    return [j for j in jobs if not j.schedule.disabled]


class Scheduler:
    """Runs due jobs once per period across all replicas; a Component of the service."""

    def __init__(self, jobs: Sequence[Job], replica_id: str | None = None, clock: Clock = utc_now) -> None:
        self.jobs = list(jobs)
        self.replica_id = replica_id
        self.clock = clock

    async def __call__(self, runtime: Runtime) -> None:
        replica_id = self.replica_id or runtime.settings.replica_id or default_replica_id()
        if not self.jobs:
            await runtime.stopping.wait()
            return
        # As cron does: a period that began before this replica started is not run late (a fresh test
        # database or a restart at 02:05 must not trigger retention); the next boundary is.
        now = self.clock()
        for job in self.jobs:
            job.last_period = job.schedule.latest(now)
        log.info("jobs.scheduled", jobs={j.name: j.schedule.text for j in self.jobs})
        while not runtime.stopping.is_set():
            try:
                await self.run_due(runtime.pool, replica_id)
            except DATABASE_ERRORS as err:
                # The period stays unclaimed by us: try again soon rather than at the next period.
                log.warning("jobs.retrying", error_class=type(err).__name__, delay=RETRY_SECONDS)
                with anyio.move_on_after(RETRY_SECONDS):
                    await runtime.stopping.wait()
                continue
            await self._sleep_until_next(runtime.stopping)

    async def run_due(self, pool: asyncpg.Pool, replica_id: str) -> list[str]:
        """Claim and run every job whose latest period has not been seen yet; returns those run here."""
        ran: list[str] = []
        now = self.clock()
        for job in self.jobs:
            period = job.schedule.latest(now)
            if period is None or period == job.last_period:
                continue
            if await self.run_once(pool, replica_id, job, period):
                ran.append(job.name)
            job.last_period = period
        return ran

    async def run_once(self, pool: asyncpg.Pool, replica_id: str, job: Job, period: datetime) -> bool:
        """Run `job` for `period` if this replica wins the claim; True if it ran (even if it failed)."""
        async with pool.acquire() as conn:
            claimed = await conn.fetchval(Q["job_claim"], job.name, period, replica_id)
        if claimed is None:
            metrics.JOB_RUNS.labels(job.name, "skipped").inc()
            log.info("job.skipped", job=job.name, period_start=period.isoformat(), reason="claimed")
            return False
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
                    await conn.execute(
                        Q["job_finish"], job.name, period, replica_id, outcome, result, error_class
                    )
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
        return True

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
