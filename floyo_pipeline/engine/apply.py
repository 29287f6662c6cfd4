"""Running a consumer's handler on its rows of a batch, inside the batch's transaction.

Directly first (no savepoint, fewest round trips). If a handler raises, the batch is run again with
each handler call in a savepoint: a failing call is retried, then its rows are split in halves down to
single rows, so that only the rows that keep failing are dead-lettered and every other row keeps its
effects. Transient database errors are never a row's fault: they propagate, and the whole batch is
retried.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from floyo_pipeline.api import Batch, BatchContext, Consumer, StreamRow
from floyo_pipeline.engine.decode import error_text
from floyo_pipeline.engine.errors import is_transient
from floyo_pipeline.queries import Q


@dataclass(frozen=True)
class RetryPolicy:
    handler_attempts: int = 3
    handler_backoff_seconds: float = 0.05


@dataclass
class DeadLetter:
    consumer: str
    partition: int
    row_id: int
    error_class: str
    error_message: str
    attempts: int


@dataclass
class ConsumerResult:
    rows: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    dead: list[DeadLetter] = field(default_factory=list)


class HandlerFailed(Exception):
    """A handler raised when run directly: the batch must be run again, with savepoints."""


async def record_dead_letters(conn: asyncpg.Connection, stream: str, dead: Sequence[DeadLetter]) -> None:
    if dead:
        await conn.execute(
            Q["dead_letter_insert"],
            stream,
            [d.consumer for d in dead],
            [d.partition for d in dead],
            [d.row_id for d in dead],
            [d.error_class for d in dead],
            [d.error_message for d in dead],
            [d.attempts for d in dead],
        )


class Applier:
    """Applies consumers' handlers to rows of one stream."""

    def __init__(self, stream: str, retry: RetryPolicy) -> None:
        self.stream = stream
        self.retry = retry

    async def directly(
        self,
        conn: asyncpg.Connection,
        consumer: Consumer,
        rows: list[StreamRow],
        result: ConsumerResult,
        shared: dict[str, Any],
    ) -> None:
        """Run the handler once, without a savepoint; raises HandlerFailed if it fails."""
        err = await self._handle(conn, consumer, rows, result, shared, savepoint=False)
        if err is not None:
            raise HandlerFailed(consumer.name) from err

    async def carefully(
        self,
        conn: asyncpg.Connection,
        consumer: Consumer,
        rows: list[StreamRow],
        result: ConsumerResult,
        shared: dict[str, Any],
    ) -> None:
        """Run the handler in savepoints: retried, then split until the failing rows stand alone."""
        if not rows:
            return
        for attempt in range(self.retry.handler_attempts):
            if await self._handle(conn, consumer, rows, result, shared, savepoint=True) is None:
                return
            if attempt + 1 < self.retry.handler_attempts:
                await asyncio.sleep(self.retry.handler_backoff_seconds * 2**attempt)
        await self._isolate(conn, consumer, rows, result, shared, self.retry.handler_attempts)

    async def _isolate(
        self,
        conn: asyncpg.Connection,
        consumer: Consumer,
        rows: list[StreamRow],
        result: ConsumerResult,
        shared: dict[str, Any],
        tries: int,
    ) -> None:
        if len(rows) == 1:
            err = await self._handle(conn, consumer, rows, result, shared, savepoint=True)
            if err is not None:
                row = rows[0]
                result.dead.append(
                    DeadLetter(
                        consumer.name,
                        row.pipeline_partition,
                        row.id,
                        type(err).__name__,
                        error_text(err),
                        tries + 1,
                    )
                )
            return
        middle = len(rows) // 2
        for half in (rows[:middle], rows[middle:]):
            if await self._handle(conn, consumer, half, result, shared, savepoint=True) is not None:
                await self._isolate(conn, consumer, half, result, shared, tries + 1)

    async def _handle(
        self,
        conn: asyncpg.Connection,
        consumer: Consumer,
        rows: Sequence[StreamRow],
        result: ConsumerResult,
        shared: dict[str, Any],
        *,
        savepoint: bool,
    ) -> Exception | None:
        """Run the handler once; on success count its outcomes and dead-letter the rows it rejected.
        Returns the handler's error, if any."""
        ctx = BatchContext(conn, shared=shared)
        batch = Batch(consumer.name, self.stream, tuple(sorted({r.pipeline_partition for r in rows})), rows)
        try:
            if savepoint:
                async with conn.transaction():
                    await consumer.handle(batch, ctx)
            else:
                await consumer.handle(batch, ctx)
        except Exception as err:
            if is_transient(err):
                raise
            return err
        for row, reason in ctx.rejected:
            result.dead.append(
                DeadLetter(consumer.name, row.pipeline_partition, row.id, "RowRejected", reason, 1)
            )
        result.outcomes.update(ctx.outcomes)
        result.outcomes["processed"] += len(rows) - sum(ctx.outcomes.values()) - len(ctx.rejected)
        return None
