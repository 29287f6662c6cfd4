"""One batch: read committed rows after the cursor, hand them to the consumer, advance the checkpoint.

All of it is one transaction. A failing handler is retried, then the batch is split down to single
rows inside savepoints so that only the rows that still fail are dead-lettered, in the same
transaction as the checkpoint. Transient database errors propagate and the whole batch is retried.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg
from pydantic import ValidationError

from floyo_pipeline import metrics
from floyo_pipeline.api import Batch, BatchContext, Consumer, StreamRow
from floyo_pipeline.engine.errors import LeaseLost, is_transient
from floyo_pipeline.queries import Q
from floyo_pipeline.rows import STREAM_MODELS

MAX_ERROR_MESSAGE = 2000


@dataclass
class Lease:
    """A held (consumer, stream, partition) with its fencing epoch and in-memory cursor."""

    consumer: str
    stream: str
    partition: int
    epoch: int
    position_txid: int
    position_id: int
    pending: dict[int, int] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.consumer, self.stream, self.partition)


@dataclass(frozen=True)
class Cursor:
    """Where a consumer stands in a partition: see the checkpoints table."""

    position_txid: int
    position_id: int
    pending: dict[int, int]

    @classmethod
    def after(
        cls, lease: Lease, records: Sequence[asyncpg.Record], in_progress: set[int], limit: int
    ) -> Cursor:
        """The cursor once `records` (read in one snapshot with `in_progress` open) are processed."""
        txid, row_id = lease.position_txid, lease.position_id
        pending = dict(lease.pending)
        for record in records:
            t, i = record["pipeline_txid"], record["id"]
            if t in pending:
                pending[t] = max(pending[t], i)
            else:
                txid, row_id = t, i
        # Pending rows sort first, so unless the batch ended inside them every finished pending
        # transaction has been read completely and can be forgotten.
        if len(records) < limit or (records and records[-1]["pipeline_txid"] not in lease.pending):
            pending = {t: i for t, i in pending.items() if t in in_progress}
        for t in in_progress:
            if t < txid and t not in pending:
                pending[t] = 0
        return cls(txid, row_id, pending)


@dataclass(frozen=True)
class RetryPolicy:
    handler_attempts: int = 3
    handler_backoff_seconds: float = 0.05


@dataclass
class DeadLetter:
    row_id: int
    error_class: str
    error_message: str
    attempts: int


@dataclass
class BatchResult:
    fetched: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    dead: list[DeadLetter] = field(default_factory=list)
    created_ats: list[float] = field(default_factory=list)
    seconds: float = 0.0


def _error_text(err: BaseException) -> str:
    if isinstance(err, ValidationError):
        # Pydantic's own text quotes the offending input; dead letters name fields, never values.
        text = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors(include_input=False)
        )
    else:
        text = str(err)
    return text[:MAX_ERROR_MESSAGE] or type(err).__name__


class BatchRunner:
    """Runs batches for one consumer; stateless apart from its settings."""

    def __init__(self, consumer: Consumer, batch_size: int, retry: RetryPolicy | None = None) -> None:
        self.consumer = consumer
        self.batch_size = batch_size
        self.retry = retry or RetryPolicy()

    async def run(self, conn: asyncpg.Connection, lease: Lease, owner: str) -> BatchResult:
        """Process at most one batch for the lease; on commit, advances `lease` in memory."""
        result = BatchResult()
        started = time.perf_counter()
        # REPEATABLE READ: the rows and the list of open transactions come from one snapshot.
        async with conn.transaction(isolation="repeatable_read"):
            records = await conn.fetch(
                Q[f"fetch_{lease.stream}"],
                lease.partition,
                lease.position_txid,
                lease.position_id,
                self.batch_size,
                list(lease.pending),
                list(lease.pending.values()),
            )
            result.fetched = len(records)
            if not records:
                return result
            in_progress = set(await conn.fetchval(Q["snapshot_in_progress"]))
            cursor = Cursor.after(lease, records, in_progress, self.batch_size)
            rows = self._validate(lease.stream, records, result)
            await self._apply(conn, lease, rows, result)
            if result.dead:
                await conn.execute(
                    Q["dead_letter_insert"],
                    lease.consumer,
                    lease.stream,
                    lease.partition,
                    [d.row_id for d in result.dead],
                    [d.error_class for d in result.dead],
                    [d.error_message for d in result.dead],
                    [d.attempts for d in result.dead],
                )
            status = await conn.execute(
                Q["checkpoint_advance"],
                lease.consumer,
                lease.stream,
                lease.partition,
                owner,
                lease.epoch,
                cursor.position_txid,
                cursor.position_id,
                list(cursor.pending),
                list(cursor.pending.values()),
                len(records),
            )
            if status != "UPDATE 1":
                raise LeaseLost(f"{lease.consumer}/{lease.stream}/{lease.partition} epoch {lease.epoch}")
            result.created_ats = [r["created_at"].timestamp() for r in records]
        lease.position_txid, lease.position_id = cursor.position_txid, cursor.position_id
        lease.pending = cursor.pending
        result.seconds = time.perf_counter() - started
        self._observe(lease, result)
        return result

    def _validate(
        self, stream: str, records: Sequence[asyncpg.Record], result: BatchResult
    ) -> list[StreamRow]:
        model = STREAM_MODELS[stream]
        subscription = self.consumer.subscription(stream)
        rows: list[StreamRow] = []
        for record in records:
            try:
                row = model.model_validate(dict(record))
            except ValidationError as err:
                result.dead.append(DeadLetter(record["id"], type(err).__name__, _error_text(err), attempts=1))
                continue
            if subscription is not None and subscription.wants(row):
                rows.append(row)
            else:
                result.outcomes["unrouted"] += 1
        return rows

    async def _apply(
        self, conn: asyncpg.Connection, lease: Lease, rows: list[StreamRow], result: BatchResult
    ) -> None:
        if not rows:
            return
        last_error: BaseException | None = None
        for attempt in range(self.retry.handler_attempts):
            ok, last_error = await self._try(conn, lease, rows, result)
            if ok:
                return
            if attempt + 1 < self.retry.handler_attempts:
                await asyncio.sleep(self.retry.handler_backoff_seconds * 2**attempt)
        assert last_error is not None
        await self._isolate(conn, lease, rows, result, self.retry.handler_attempts)

    async def _try(
        self, conn: asyncpg.Connection, lease: Lease, rows: Sequence[StreamRow], result: BatchResult
    ) -> tuple[bool, BaseException | None]:
        ctx = BatchContext(conn)
        try:
            async with conn.transaction():
                await self.consumer.handle(Batch(lease.consumer, lease.stream, lease.partition, rows), ctx)
        except Exception as err:
            if is_transient(err):
                raise
            return False, err
        result.outcomes.update(ctx.outcomes)
        result.outcomes["processed"] += len(rows) - sum(ctx.outcomes.values())
        return True, None

    async def _isolate(
        self, conn: asyncpg.Connection, lease: Lease, rows: list[StreamRow], result: BatchResult, tries: int
    ) -> None:
        """Split until the failing rows stand alone; keep the effects of every row that succeeds."""
        if len(rows) == 1:
            ok, err = await self._try(conn, lease, rows, result)
            if not ok and err is not None:
                result.dead.append(DeadLetter(rows[0].id, type(err).__name__, _error_text(err), tries + 1))
            return
        middle = len(rows) // 2
        for half in (rows[:middle], rows[middle:]):
            ok, _ = await self._try(conn, lease, half, result)
            if not ok:
                await self._isolate(conn, lease, half, result, tries + 1)

    def _observe(self, lease: Lease, result: BatchResult) -> None:
        consumer, stream = lease.consumer, lease.stream
        metrics.BATCH_DURATION.labels(consumer).observe(result.seconds)
        for outcome, n in result.outcomes.items():
            metrics.EVENTS.labels(stream, consumer, outcome).inc(n)
        if result.dead:
            metrics.EVENTS.labels(stream, consumer, "dead_lettered").inc(len(result.dead))
        now = time.time()
        histogram = metrics.END_TO_END_LATENCY.labels(stream)
        for created in result.created_ats:
            histogram.observe(max(0.0, now - created))
