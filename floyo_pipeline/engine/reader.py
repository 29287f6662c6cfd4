"""A stream reader: runs the batches of one stream over a share of the partitions this process leases,
until stopped. At most one batch transaction is in flight per reader (so per leased partition and
consumer); the lease manager changes the leased set only between batches (it takes the lock)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Iterator

import asyncpg
import structlog

from floyo_pipeline import metrics
from floyo_pipeline.engine.batch import BatchRunner
from floyo_pipeline.engine.checkpoints import Lease, LeaseKey
from floyo_pipeline.engine.errors import LeaseLost, backoff_delays, is_transient
from floyo_pipeline.logs import get_logger

log = get_logger(__name__)

TRANSIENT_BACKOFF_MAX_SECONDS = 5.0


class StreamReader:
    def __init__(
        self,
        runner: BatchRunner,
        pool: asyncpg.Pool,
        concurrency: asyncio.Semaphore,
        fenced_pause: float,
        on_rows: Callable[[], None] = lambda: None,
    ) -> None:
        self.runner = runner
        self.on_rows = on_rows
        self.stream = runner.stream
        self.pool = pool
        self.concurrency = concurrency
        self.fenced_pause = fenced_pause
        self.leases: dict[LeaseKey, Lease] = {}
        self.lock = asyncio.Lock()
        self.wake = asyncio.Event()
        self.stopping = False

    def wake_up(self) -> None:
        self.wake.set()

    def stop(self) -> None:
        self.stopping = True
        self.wake.set()

    async def add(self, leases: Iterable[Lease]) -> None:
        async with self.lock:
            for lease in leases:
                self.leases[(lease.consumer, lease.partition)] = lease
        self.wake.set()

    async def remove(self, keys: Iterable[LeaseKey]) -> list[Lease]:
        """Take leases away once the batch in flight (if any) has finished; returns them."""
        async with self.lock:
            return [self.leases.pop(k) for k in list(keys) if k in self.leases]

    async def run(self) -> None:
        """Loop until stopped; a batch in flight always finishes (commit or rollback) first."""
        structlog.contextvars.bind_contextvars(stream=self.stream)
        delays: Iterator[float] | None = None
        while not self.stopping:
            self.wake.clear()
            if not self.leases:
                await self.wake.wait()
                continue
            try:
                async with self.concurrency, self.lock, self.pool.acquire() as conn:
                    if self.stopping or not self.leases:
                        continue
                    result = await self.runner.run(conn, self.leases)
            except LeaseLost as lost:
                # The lease manager's next tick finds out which partitions are gone and removes them.
                log.warning("lease.lost", reason=str(lost))
                await self._sleep_or_wake(self.fenced_pause)
                continue
            except Exception as err:
                if not is_transient(err):
                    raise
                delays = delays or backoff_delays(cap=TRANSIENT_BACKOFF_MAX_SECONDS)
                delay = next(delays)
                log.warning("batch.retrying", error_class=type(err).__name__, delay=round(delay, 3))
                await self._sleep_or_wake(delay)
                continue
            delays = None
            metrics.READS.labels(self.stream, "rows" if result.fetched else "none").inc()
            if result.fetched:
                self.on_rows()
            for consumer, outcome in result.consumers.items():
                log.info(
                    "batch.committed",
                    consumer=consumer,
                    batch_size=outcome.rows,
                    duration=round(result.seconds, 4),
                    partitions=len({p for c, p in self.leases if c == consumer}),
                    dead_lettered=len(outcome.dead),
                    **dict(outcome.outcomes),
                )
                for dead in outcome.dead:
                    log.warning(
                        "row.dead_lettered",
                        consumer=consumer,
                        row_id=dead.row_id,
                        partition=dead.partition,
                        error_class=dead.error_class,
                        attempts=dead.attempts,
                    )
            if result.more:
                await asyncio.sleep(0)
                continue
            await self.wake.wait()

    async def _sleep_or_wake(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), timeout=seconds)
