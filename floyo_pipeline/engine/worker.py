"""A partition worker: runs batches for one held lease until stopped, the backlog drained, or fenced."""

from __future__ import annotations

import asyncio
import contextlib
import random

import asyncpg
import structlog

from floyo_pipeline.engine.batch import BatchRunner, Lease
from floyo_pipeline.engine.errors import LeaseLost, is_transient
from floyo_pipeline.logs import get_logger

log = get_logger(__name__)

TRANSIENT_BACKOFF_MAX_SECONDS = 5.0


class PartitionWorker:
    def __init__(
        self,
        lease: Lease,
        runner: BatchRunner,
        pool: asyncpg.Pool,
        owner: str,
        concurrency: asyncio.Semaphore,
    ) -> None:
        self.lease = lease
        self.runner = runner
        self.pool = pool
        self.owner = owner
        self.concurrency = concurrency
        self.wake = asyncio.Event()
        self.stopping = False
        self.lost = False
        self.idle = asyncio.Event()

    def stop(self) -> None:
        self.stopping = True
        self.wake.set()

    async def run(self) -> None:
        """Loop until stopped or fenced; a batch in flight always finishes (commit or rollback) first."""
        structlog.contextvars.bind_contextvars(**self._where())
        transient_failures = 0
        while not self.stopping:
            self.wake.clear()
            self.idle.clear()
            try:
                async with self.concurrency, self.pool.acquire() as conn:
                    result = await self.runner.run(conn, self.lease, self.owner)
            except LeaseLost:
                self.lost = True
                log.warning("lease.lost")
                return
            except Exception as err:
                if not is_transient(err):
                    raise
                transient_failures += 1
                delay = min(TRANSIENT_BACKOFF_MAX_SECONDS, 0.1 * 2**transient_failures) * random.uniform(
                    0.5, 1
                )
                log.warning("batch.retrying", error_class=type(err).__name__, delay=round(delay, 3))
                await self._sleep_or_wake(delay)
                continue
            finally:
                self.idle.set()
            transient_failures = 0
            if result.fetched:
                log.info(
                    "batch.committed",
                    batch_size=result.fetched,
                    duration=round(result.seconds, 4),
                    position=self.lease.position_id,
                    dead_lettered=len(result.dead),
                    **dict(result.outcomes),
                )
                for dead in result.dead:
                    log.warning(
                        "row.dead_lettered",
                        row_id=dead.row_id,
                        error_class=dead.error_class,
                        attempts=dead.attempts,
                    )
            if result.fetched >= self.runner.batch_size:
                await asyncio.sleep(0)
                continue
            await self.wake.wait()

    async def _sleep_or_wake(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), timeout=seconds)

    def _where(self) -> dict[str, object]:
        return {
            "consumer": self.lease.consumer,
            "stream": self.lease.stream,
            "partition": self.lease.partition,
        }
