"""One batch of one stream, in one transaction: read the committed rows after the cursors, decode each
once, hand each consumer its rows in (txid, id) order, then store the dead letters and the fenced
cursors. Reading is the stream's queries (streams.py), decoding decode.py, running handlers apply.py,
cursors and fencing checkpoints.py; this module only puts them in order.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from floyo_pipeline import metrics
from floyo_pipeline.api import Consumer, StreamRow
from floyo_pipeline.engine.apply import (
    Applier,
    ConsumerResult,
    DeadLetter,
    HandlerFailed,
    RetryPolicy,
    record_dead_letters,
)
from floyo_pipeline.engine.checkpoints import CheckpointStore, Lease, LeaseKey, Read, advance_cursor, moved
from floyo_pipeline.engine.decode import Rejected, RowDecoder, error_text
from floyo_pipeline.engine.errors import is_transient
from floyo_pipeline.engine.streams import STREAMS
from floyo_pipeline.logs import get_logger

log = get_logger(__name__)

LATENCY_SAMPLE = 100
IDLE_PERSIST_SECONDS = 5.0


@dataclass(frozen=True)
class ReadLimits:
    """How much one batch reads: rows, bytes of text and JSON, and the largest row it will read."""

    rows: int
    batch_bytes: int = 4 * 1024 * 1024
    row_bytes: int = 4 * 1024 * 1024


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


@dataclass
class Routed:
    """A batch's rows in (txid, id) order, each consumer's share of them, and how many of them each
    (consumer, partition) lease processes."""

    ordered: list[Any]
    rows: dict[str, list[Any]]
    counts: dict[LeaseKey, int]


def _within_limits(records: Sequence[Any], limit: int) -> tuple[list[Any], bool]:
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
        store: CheckpointStore,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.stream = stream
        self.consumers = {c.name: c for c in consumers}
        self.limits = limits
        self.batch_size = limits.rows
        self.store = store
        self.applier = Applier(stream, retry or RetryPolicy())
        self.queries = STREAMS[stream].queries
        self.decoder = RowDecoder(STREAMS[stream], limits.row_bytes)
        self._persisted_all_at = 0.0
        self._unstored = False

    async def run(self, conn: asyncpg.Connection, leases: Mapping[LeaseKey, Lease]) -> BatchResult:
        """Process at most one batch over the leases; on commit, advances `leases` in place.

        Handlers first run directly; if one fails, the transaction is rolled back and the batch runs
        again with savepoints, which lets retries and the isolation of failing rows keep the rest.
        """
        try:
            return await self._run_once(conn, leases, carefully=False)
        except HandlerFailed:
            return await self._run_once(conn, leases, carefully=True)

    async def _run_once(
        self, conn: asyncpg.Connection, leases: Mapping[LeaseKey, Lease], *, carefully: bool
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
            routed = self._route(leases, late, forward)
            advanced = {
                key: advance_cursor(lease, late, forward, routed.counts.get(key, 0))
                for key, lease in leases.items()
            }
            # Partitions with rows always store their cursor (it commits with their effects); the
            # others now and then and once the reader is idle: an older stored cursor of a partition
            # without new rows is still exact, it only makes a restart scan a little more.
            unstored = self._unstored or moved(leases, advanced)
            persist_all = unstored and (
                not result.fetched or time.monotonic() - self._persisted_all_at >= IDLE_PERSIST_SECONDS
            )
            changed = [a for a in advanced.values() if a.processed or persist_all]
            if not changed:
                self._unstored = unstored
                self._adopt(leases, advanced)
                return result
            await self._apply(conn, routed, result, carefully)
            await record_dead_letters(conn, self.stream, result.dead)
            await self.store.advance(conn, self.stream, changed)
            result.created_ats = [
                r["created_at"].timestamp() for r in routed.ordered if r["created_at"] is not None
            ]
        self._unstored = unstored and not persist_all
        self._adopt(leases, advanced)
        if persist_all:
            self._persisted_all_at = time.monotonic()
        result.seconds = time.perf_counter() - started
        self._observe(result)
        return result

    @staticmethod
    def _route(leases: Mapping[LeaseKey, Lease], late: Read, forward: Read) -> Routed:
        """Each consumer's rows: of the partitions it leases, after its own cursors, in (txid, id)
        order (late rows, of transactions the cursors passed while open, come before every forward
        row). Usually every consumer leases every partition at the same cursor and gets all of them
        without a look at each row."""
        ordered = [*late.rows, *forward.rows]
        first_forward: dict[int, tuple[int, int]] = {}
        for r in forward.rows:
            first_forward.setdefault(r["pipeline_partition"], (r["pipeline_txid"], r["id"]))
        late_partitions = {r["pipeline_partition"] for r in late.rows}
        present = first_forward.keys() | late_partitions
        by_consumer: dict[str, dict[int, Lease]] = {}
        for (consumer, partition), lease in leases.items():
            by_consumer.setdefault(consumer, {})[partition] = lease
        rows: dict[str, list[Any]] = {}
        for consumer, held in by_consumer.items():
            if not late_partitions and all(
                p in held and held[p].position < first_forward[p] for p in present
            ):
                rows[consumer] = ordered
                continue
            wanted = [r for r in late.rows if (x := held.get(r["pipeline_partition"])) and x.wants_late(r)]
            wanted += [
                r for r in forward.rows if (x := held.get(r["pipeline_partition"])) and x.wants_forward(r)
            ]
            rows[consumer] = wanted
        counts: dict[LeaseKey, int] = {}
        for consumer, records in rows.items():
            for record in records:
                key = (consumer, record["pipeline_partition"])
                counts[key] = counts.get(key, 0) + 1
        return Routed(ordered, rows, counts)

    async def _apply(
        self, conn: asyncpg.Connection, routed: Routed, result: BatchResult, carefully: bool
    ) -> None:
        """Decode each row once, then run each consumer on its rows in (txid, id) order."""
        shared: dict[str, Any] = {}
        decoded = {record["id"]: self.decoder.decode(record) for record in routed.ordered}
        for name, consumer in self.consumers.items():
            records = routed.rows.get(name)
            if not records:
                continue
            outcome = result.consumers.setdefault(name, ConsumerResult(rows=len(records)))
            subscription = consumer.subscription(self.stream)
            rows: list[StreamRow] = []
            for record in records:
                row = decoded[record["id"]]
                if isinstance(row, Rejected):
                    partition = record["pipeline_partition"]
                    outcome.dead.append(
                        DeadLetter(name, partition, record["id"], row.error_class, row.message, 1)
                    )
                elif subscription is not None and subscription.wants(row):
                    rows.append(row)
                else:
                    outcome.outcomes["unrouted"] += 1
            if carefully:
                await self.applier.carefully(conn, consumer, rows, outcome, shared)
            elif rows:
                await self.applier.directly(conn, consumer, rows, outcome, shared)

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
        limits = self.limits
        records = await self._fetch(
            conn, "fetch_pending", txids, partitions, self.batch_size, limits.batch_bytes, limits.row_bytes
        )
        rows, complete = _within_limits(records, self.batch_size)
        by_partition: dict[int, list[Lease]] = {}
        for (_, p), lease in leases.items():
            by_partition.setdefault(p, []).append(lease)
        kept = [r for r in rows if any(x.wants_late(r) for x in by_partition[r["pipeline_partition"]])]
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
            *(low[0], low[1], sorted(lowest), txids, ids, limit),
            *(self.limits.batch_bytes, self.limits.row_bytes),
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
