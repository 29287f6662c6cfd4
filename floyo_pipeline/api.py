"""The engine's public consumer API: the only part of floyo_pipeline that consumers import.

A consumer declares its name and subscriptions and handles one batch at a time: rows of one stream
(from the partitions this replica leases), each user's rows in ingestion order, inside the
transaction that also advances its checkpoints. Everything it writes through `BatchContext` commits
together with those checkpoints, or not at all.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import asyncpg

from floyo_pipeline.queries import load_queries, parse_queries
from floyo_pipeline.rows import MetricsLogEntry, StreamRow, TelemetryEvent

__all__ = [
    "Batch",
    "BatchContext",
    "Consumer",
    "MetricsLogEntry",
    "StreamRow",
    "Subscription",
    "TelemetryEvent",
    "load_queries",
    "parse_queries",
]

RowT = TypeVar("RowT", bound=StreamRow)


@dataclass(frozen=True)
class Subscription:
    """A stream a consumer reads; `event_types` None means every row of the stream."""

    stream: str
    event_types: frozenset[str] | None = None

    def wants(self, row: StreamRow) -> bool:
        if self.event_types is None:
            return True
        return getattr(row, "event_type", None) in self.event_types


@dataclass(frozen=True)
class Batch(Generic[RowT]):
    """Validated rows of one stream, from one or more partitions, in the order they were committed.

    Each user's rows always come in order: a user belongs to exactly one partition.
    """

    consumer: str
    stream: str
    partitions: tuple[int, ...]
    rows: Sequence[RowT]


@dataclass
class BatchContext:
    """The batch's transaction: run SQL on it, count rows per outcome for the metrics, and reject the
    rows this consumer cannot process (each becomes a dead letter with the reason, in the same
    transaction; the others keep their effects)."""

    connection: asyncpg.Connection
    outcomes: Counter[str] = field(default_factory=Counter)
    rejected: list[tuple[StreamRow, str]] = field(default_factory=list)

    async def execute(self, query: str, *args: Any) -> str:
        return str(await self.connection.execute(query, *args))

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        return list(await self.connection.fetch(query, *args))

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self.connection.fetchrow(query, *args)
        return row

    async def fetchval(self, query: str, *args: Any) -> Any:
        return await self.connection.fetchval(query, *args)

    def reject(self, row: StreamRow, reason: str) -> None:
        """Dead-letter `row` for this consumer with `reason` (name fields and limits, never values).
        The handler must leave the row out of its effects and state."""
        self.rejected.append((row, reason))

    def count(self, outcome: str, n: int = 1) -> None:
        """Count `n` rows under `outcome` (for example `skipped_consent`); reported after commit."""
        if n:
            self.outcomes[outcome] += n


class Consumer(ABC):
    """An analyzer. Keep no state in memory across batches: read and write it through the context."""

    name: str
    subscriptions: tuple[Subscription, ...]

    @abstractmethod
    async def handle(self, batch: Batch[Any], ctx: BatchContext) -> None:
        """Apply the batch's effects. Raising rolls the batch back; the engine retries, then isolates
        the failing rows into dead letters."""

    def subscription(self, stream: str) -> Subscription | None:
        for sub in self.subscriptions:
            if sub.stream == stream:
                return sub
        return None
