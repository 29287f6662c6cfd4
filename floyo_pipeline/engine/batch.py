"""One batch of one stream: read committed rows after the cursors, hand them to every consumer,
advance the checkpoints.

All of it is one transaction, and each row is read and validated once for all the consumers that
lease its partition. Each consumer runs in its own savepoint: a failing handler is retried, then the
rows are split down to single rows so that only those that still fail are dead-lettered, in the
same transaction as the checkpoints. Transient database errors propagate and the whole batch is
retried.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import asyncpg

from floyo_pipeline import metrics
from floyo_pipeline.api import Batch, BatchContext, Consumer, StreamRow
from floyo_pipeline.engine.decode import Rejected, RowDecoder, error_text
from floyo_pipeline.engine.errors import LeaseLost, is_transient
from floyo_pipeline.engine.streams import STREAMS
from floyo_pipeline.logs import get_logger
from floyo_pipeline.queries import Q

log = get_logger(__name__)

LATENCY_SAMPLE = 100
IDLE_PERSIST_SECONDS = 5.0

LeaseKey = tuple[str, int]  # (consumer, partition) within one stream


@dataclass
class Lease:
    """A held (consumer, stream, partition): its fencing epoch and its cursor, kept in memory."""

    consumer: str
    stream: str
    partition: int
    epoch: int
    position_txid: int
    position_id: int
    # Transactions open when the cursor passed them -> last row id of theirs already processed.
    pending: dict[int, int] = field(default_factory=dict)
    processed: int = 0

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.consumer, self.stream, self.partition)

    @property
    def position(self) -> tuple[int, int]:
        return (self.position_txid, self.position_id)

    def wants_late(self, record: asyncpg.Record) -> bool:
        after = self.pending.get(record["pipeline_txid"])
        return after is not None and record["id"] > after

    def wants_forward(self, record: asyncpg.Record) -> bool:
        return (record["pipeline_txid"], record["id"]) > self.position


@dataclass
class Read:
    """Rows from one statement and the transactions that were open in its snapshot; `complete` when
    the statement returned every row it could (no row or byte limit cut it short)."""

    rows: list[asyncpg.Record]
    in_progress: set[int]
    complete: bool


@dataclass(frozen=True)
class ReadLimits:
    """How much one batch reads: rows, bytes of text and JSON, and the largest row it will read."""

    rows: int
    batch_bytes: int = 4 * 1024 * 1024
    row_bytes: int = 4 * 1024 * 1024


def advance_cursor(lease: Lease, late: Read, forward: Read, processed: int) -> Lease:
    """The lease's cursor once the rows of both reads are processed.

    The forward read returned rows in (txid, id) order across every leased partition from at or
    before this cursor, so the partition has been read up to the last of them; transactions still
    open in that read's snapshot below the new position become pending. Rows of pending
    transactions advance their entries; when the late read got all of them, the pending
    transactions that had finished in its snapshot are complete and forgotten.
    """
    pending = dict(lease.pending)
    for record in late.rows:
        if record["pipeline_partition"] == lease.partition and record["pipeline_txid"] in pending:
            txid = record["pipeline_txid"]
            pending[txid] = max(pending[txid], record["id"])
    if late.complete:
        pending = {t: i for t, i in pending.items() if t in late.in_progress}
    position = lease.position
    if forward.rows:
        position = max(position, (forward.rows[-1]["pipeline_txid"], forward.rows[-1]["id"]))
    for txid in forward.in_progress:
        if txid < position[0] and txid not in pending:
            pending[txid] = 0
    return replace(
        lease, position_txid=position[0], position_id=position[1], pending=pending, processed=processed
    )


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


@dataclass
class BatchResult:
    fetched: int = 0
    more: bool = False
    """The reads stopped at a row or byte limit: there is more to read now."""
    consumers: dict[str, ConsumerResult] = field(default_factory=dict)
    created_ats: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def dead(self) -> list[DeadLetter]:
        return [d for c in self.consumers.values() for d in c.dead]


class _HandlerFailed(Exception):
    """A handler raised in the fast path (no savepoints): the batch is run again, carefully."""


def advanced_any(leases: Mapping[LeaseKey, Lease], advanced: Mapping[LeaseKey, Lease]) -> bool:
    return any(
        a.position != leases[k].position or a.pending != leases[k].pending for k, a in advanced.items()
    )


def _by_partition(records: Sequence[asyncpg.Record]) -> dict[int, list[asyncpg.Record]]:
    grouped: dict[int, list[asyncpg.Record]] = {}
    for record in records:
        grouped.setdefault(record["pipeline_partition"], []).append(record)
    return grouped


def _within_limits(records: Sequence[asyncpg.Record], limit: int) -> tuple[list[asyncpg.Record], bool]:
    """The rows of a read up to its byte budget, and whether the read got every row there was."""
    rows = [r for r in records if r["id"] is not None]
    kept = rows
    for i, record in enumerate(rows):
        if not record["pipeline_fits"]:
            kept = rows[:i]
            break
    return kept, len(rows) < limit and len(kept) == len(rows)


class BatchRunner:
    """Runs batches of one stream for the consumers that subscribe to it."""

    def __init__(
        self,
        stream: str,
        consumers: Sequence[Consumer],
        limits: ReadLimits,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.stream = stream
        self.consumers = {c.name: c for c in consumers}
        self.limits = limits
        self.batch_size = limits.rows
        self.retry = retry or RetryPolicy()
        self.queries = STREAMS[stream].queries
        self.decoder = RowDecoder(STREAMS[stream], limits.row_bytes)
        self._persisted_all_at = 0.0
        self._unstored = False

    async def run(
        self, conn: asyncpg.Connection, leases: Mapping[LeaseKey, Lease], owner: str
    ) -> BatchResult:
        """Process at most one batch over the leases; on commit, advances `leases` in place.

        Handlers first run without savepoints (fewer round trips); if one fails, the transaction is
        rolled back and the batch runs again with a savepoint per handler call, which lets the
        retries and the isolation of failing rows keep everything else.
        """
        try:
            return await self._run_once(conn, leases, owner, savepoints=False)
        except _HandlerFailed:
            return await self._run_once(conn, leases, owner, savepoints=True)

    async def _run_once(
        self, conn: asyncpg.Connection, leases: Mapping[LeaseKey, Lease], owner: str, *, savepoints: bool
    ) -> BatchResult:
        result = BatchResult()
        started = time.perf_counter()
        async with conn.transaction():
            late = await self._read_late(conn, leases)
            forward = Read([], set(), False)
            if late.complete:
                forward = await self._read_forward(conn, leases, self.batch_size - len(late.rows))
            result.fetched = len(late.rows) + len(forward.rows)
            result.more = not (late.complete and forward.complete)
            late_by = _by_partition(late.rows)
            forward_by = _by_partition(forward.rows)
            mine = {
                key: [r for r in late_by.get(key[1], ()) if lease.wants_late(r)]
                + [r for r in forward_by.get(key[1], ()) if lease.wants_forward(r)]
                for key, lease in leases.items()
            }
            advanced = {
                key: advance_cursor(lease, late, forward, len(mine.get(key, ())))
                for key, lease in leases.items()
            }
            # Partitions with rows always store their cursor (it commits with their effects); the
            # others now and then and once the reader is idle: an older stored cursor of a partition
            # without new rows is still exact, it only makes a restart scan a little more.
            unstored = self._unstored or advanced_any(leases, advanced)
            persist_all = unstored and (
                not result.fetched or time.monotonic() - self._persisted_all_at >= IDLE_PERSIST_SECONDS
            )
            changed = [a for a in advanced.values() if a.processed or persist_all]
            if not changed:
                self._unstored = unstored
                self._adopt(leases, advanced)
                return result
            await self._apply_all(conn, leases, mine, result, savepoints)
            await self._store(conn, owner, changed, result)
            result.created_ats = [
                r["created_at"].timestamp()
                for r in (*late.rows, *forward.rows)
                if r["created_at"] is not None
            ]
        self._unstored = unstored and not persist_all
        self._adopt(leases, advanced)
        if persist_all:
            self._persisted_all_at = time.monotonic()
        result.seconds = time.perf_counter() - started
        self._observe(result)
        return result

    async def _apply_all(
        self,
        conn: asyncpg.Connection,
        leases: Mapping[LeaseKey, Lease],
        mine: Mapping[LeaseKey, list[asyncpg.Record]],
        result: BatchResult,
        savepoints: bool,
    ) -> None:
        """Decode each row once, then run each consumer on its rows in (txid, id) order."""
        validated: dict[int, StreamRow | Rejected] = {}
        for records in mine.values():
            for record in records:
                if record["id"] not in validated:
                    validated[record["id"]] = self.decoder.decode(record)
        for name, consumer in self.consumers.items():
            records = sorted(
                (r for (c, _), rs in mine.items() if c == name for r in rs),
                key=lambda r: (r["pipeline_txid"], r["id"]),
            )
            if not records:
                continue
            outcome = result.consumers.setdefault(name, ConsumerResult(rows=len(records)))
            subscription = consumer.subscription(self.stream)
            rows: list[StreamRow] = []
            for record in records:
                row = validated[record["id"]]
                if isinstance(row, Rejected):
                    outcome.dead.append(
                        DeadLetter(
                            name, record["pipeline_partition"], record["id"], row.error_class, row.message, 1
                        )
                    )
                elif subscription is not None and subscription.wants(row):
                    rows.append(row)
                else:
                    outcome.outcomes["unrouted"] += 1
            if savepoints:
                await self._apply(conn, consumer, rows, outcome)
            elif rows:
                await self._apply_directly(conn, consumer, rows, outcome)

    async def _store(
        self, conn: asyncpg.Connection, owner: str, changed: list[Lease], result: BatchResult
    ) -> None:
        dead = result.dead
        if dead:
            await conn.execute(
                Q["dead_letter_insert"],
                self.stream,
                [d.consumer for d in dead],
                [d.partition for d in dead],
                [d.row_id for d in dead],
                [d.error_class for d in dead],
                [d.error_message for d in dead],
                [d.attempts for d in dead],
            )
        status = await conn.execute(
            Q["checkpoint_advance"],
            self.stream,
            owner,
            [a.consumer for a in changed],
            [a.partition for a in changed],
            [a.epoch for a in changed],
            [a.position_txid for a in changed],
            [a.position_id for a in changed],
            [{str(t): i for t, i in a.pending.items()} for a in changed],
            [a.processed for a in changed],
        )
        if status != f"UPDATE {len(changed)}":
            raise LeaseLost(f"{self.stream}: a lease of this replica was taken over")

    @staticmethod
    def _adopt(leases: Mapping[LeaseKey, Lease], advanced: Mapping[LeaseKey, Lease]) -> None:
        for key, lease in advanced.items():
            original = leases[key]
            original.position_txid, original.position_id = lease.position_txid, lease.position_id
            original.pending = lease.pending

    async def _read_late(self, conn: asyncpg.Connection, leases: Mapping[LeaseKey, Lease]) -> Read:
        """Rows of pending transactions that some lease still needs, and whether all of them fit."""
        txids = sorted({t for lease in leases.values() for t in lease.pending})
        if not txids:
            return Read([], set(), True)
        partitions = sorted({p for _, p in leases})
        records = await self._fetch(
            conn,
            "fetch_pending",
            txids,
            partitions,
            self.batch_size,
            self.limits.batch_bytes,
            self.limits.row_bytes,
        )
        rows, complete = _within_limits(records, self.batch_size)
        by_partition: dict[int, list[Lease]] = {}
        for (_, p), lease in leases.items():
            by_partition.setdefault(p, []).append(lease)
        kept = [
            r for r in rows if any(lease.wants_late(r) for lease in by_partition[r["pipeline_partition"]])
        ]
        return Read(kept, set(records[0]["in_progress"]), complete)

    async def _read_forward(
        self, conn: asyncpg.Connection, leases: Mapping[LeaseKey, Lease], limit: int
    ) -> Read:
        """The next rows after the smallest cursor of each leased partition."""
        lowest: dict[int, tuple[int, int]] = {}
        for (_, p), lease in leases.items():
            lowest[p] = min(lowest.get(p, lease.position), lease.position)
        size = max(lowest) + 1
        txids, ids = [0] * size, [0] * size
        for p, (txid, row_id) in lowest.items():
            txids[p], ids[p] = txid, row_id
        low = min(lowest.values())
        records = await self._fetch(
            conn,
            "fetch_forward",
            low[0],
            low[1],
            sorted(lowest),
            txids,
            ids,
            limit,
            self.limits.batch_bytes,
            self.limits.row_bytes,
        )
        rows, complete = _within_limits(records, limit)
        return Read(rows, set(records[0]["in_progress"]), complete)

    async def _fetch(self, conn: asyncpg.Connection, name: str, *args: object) -> list[Any]:
        """Run a batch read. Should decoding its result fail in the driver (a value no guard of the
        stream's queries foresaw), read the keys again and each row on its own, so that only the rows
        that cannot be read are rejected."""
        try:
            return list(await conn.fetch(self.queries[name], *args))
        except Exception as err:
            if is_transient(err):
                raise
            log.warning("batch.read_failed", stream=self.stream, query=name, error_class=type(err).__name__)
        keys = list(await conn.fetch(self.queries[f"{name}_keys"], *args))
        records: list[Any] = []
        for key in keys:
            if key["id"] is None or not key["pipeline_fits"]:
                records.append(key)
                continue
            failure = "the row is gone"
            try:
                row = await conn.fetchrow(self.queries["fetch_row"], key["id"], self.limits.row_bytes)
            except Exception as err:
                if is_transient(err):
                    raise
                row, failure = None, f"the row could not be read: {type(err).__name__}: {error_text(err)}"
            if row is None:
                records.append({**dict(key), "created_at": None, "pipeline_error": failure})
            else:
                records.append({**dict(row), "in_progress": key["in_progress"], "pipeline_fits": True})
        return records

    async def _apply_directly(
        self, conn: asyncpg.Connection, consumer: Consumer, rows: list[StreamRow], result: ConsumerResult
    ) -> None:
        err = await self._handle(conn, consumer, rows, result, savepoint=False)
        if err is not None:
            raise _HandlerFailed(consumer.name) from err

    async def _apply(
        self, conn: asyncpg.Connection, consumer: Consumer, rows: list[StreamRow], result: ConsumerResult
    ) -> None:
        if not rows:
            return
        for attempt in range(self.retry.handler_attempts):
            if await self._try(conn, consumer, rows, result) is None:
                return
            if attempt + 1 < self.retry.handler_attempts:
                await asyncio.sleep(self.retry.handler_backoff_seconds * 2**attempt)
        await self._isolate(conn, consumer, rows, result, self.retry.handler_attempts)

    async def _try(
        self, conn: asyncpg.Connection, consumer: Consumer, rows: Sequence[StreamRow], result: ConsumerResult
    ) -> Exception | None:
        """Run the handler in a savepoint; None on success, else the (non-transient) error."""
        return await self._handle(conn, consumer, rows, result, savepoint=True)

    async def _handle(
        self,
        conn: asyncpg.Connection,
        consumer: Consumer,
        rows: Sequence[StreamRow],
        result: ConsumerResult,
        *,
        savepoint: bool,
    ) -> Exception | None:
        """Run the handler once (in a savepoint if asked); on success count its outcomes and
        dead-letter the rows it rejected. Transient database errors propagate."""
        ctx = BatchContext(conn)
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

    async def _isolate(
        self,
        conn: asyncpg.Connection,
        consumer: Consumer,
        rows: list[StreamRow],
        result: ConsumerResult,
        tries: int,
    ) -> None:
        """Split until the failing rows stand alone; keep the effects of every row that succeeds."""
        if len(rows) == 1:
            err = await self._try(conn, consumer, rows, result)
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
            if await self._try(conn, consumer, half, result) is not None:
                await self._isolate(conn, consumer, half, result, tries + 1)

    def _observe(self, result: BatchResult) -> None:
        for name, outcome in result.consumers.items():
            metrics.BATCH_DURATION.labels(name).observe(result.seconds)
            for kind, n in outcome.outcomes.items():
                metrics.EVENTS.labels(self.stream, name, kind).inc(n)
            if outcome.dead:
                metrics.EVENTS.labels(self.stream, name, "dead_lettered").inc(len(outcome.dead))
        now = time.time()
        histogram = metrics.END_TO_END_LATENCY.labels(self.stream)
        created_ats = result.created_ats
        # Every row of a small batch; a systematic sample of a large one (a backlog's age, not noise).
        step = max(1, len(created_ats) // LATENCY_SAMPLE)
        for created in created_ats[::step]:
            histogram.observe(max(0.0, now - created))
