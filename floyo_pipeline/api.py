"""The engine's public consumer API: the only part of floyo_pipeline that consumers import.

A consumer declares its name, its subscriptions (each with its handler) and the tables it writes, and
handles one batch at a time: rows of one stream (from the partitions this replica leases), each
user's rows in ingestion order, inside the transaction that also advances its checkpoints. Everything
it writes through `BatchContext` commits together with those checkpoints, or not at all. Retention,
`validate-schema` and the tests find a consumer's tables through its `tables` declaration only.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
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
    "Table",
    "TelemetryEvent",
    "load_queries",
    "parse_queries",
]

RowT = TypeVar("RowT", bound=StreamRow)
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")
SCHEMAS = ("public", "floyo_pipeline")
"""Where a consumer's tables live: the app's outputs, or the service's private schema."""


@dataclass(frozen=True, kw_only=True)
class Table:
    """A table a consumer writes, schema-qualified (`floyo_pipeline.file_pattern_state`): the column
    naming the user each row belongs to (None: no user, like a global aggregate) and the event-time
    column retention measures a row's age by (None: retention keeps its rows). Retention deletes a
    row once it is older than its user's `data_retention_days`, or the default without a user."""

    name: str
    user_column: str | None
    age_column: str | None

    def __post_init__(self) -> None:
        schema, _, table = self.name.partition(".")
        if schema not in SCHEMAS or not _IDENTIFIER.match(table):
            raise ValueError(f"table {self.name!r}: expected one of {', '.join(SCHEMAS)}, a dot and a name")
        for column in (self.user_column, self.age_column):
            if column is not None and not _IDENTIFIER.match(column):
                raise ValueError(f"table {self.name}: {column!r} is not a plain column name")

    @property
    def schema(self) -> str:
        return self.name.partition(".")[0]

    @property
    def bare_name(self) -> str:
        return self.name.partition(".")[2]


@dataclass(frozen=True)
class Subscription:
    """A stream a consumer reads; `event_types` None means every row of the stream. `handler` applies
    the rows of each batch of that stream (None: the consumer overrides `Consumer.handle`)."""

    stream: str
    event_types: frozenset[str] | None = None
    handler: Handler | None = field(default=None, compare=False, repr=False)

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
    shared: dict[str, Any] = field(default_factory=dict)
    """What the consumers of one batch share (read once for all of them in its transaction, e.g. the
    privacy settings of its users); keys are the consumers' own."""

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


Handler = Callable[[Sequence[Any], BatchContext], Awaitable[None]]
"""Applies the rows of one batch of a subscription's stream (see `Consumer.handle`)."""


class Consumer:
    """An analyzer. Keep no state in memory across batches: read and write it through the context.
    `tables` names every table it writes, shared outputs too (each consumer writing one declares it)."""

    name: str
    subscriptions: tuple[Subscription, ...]
    tables: tuple[Table, ...] = ()

    async def handle(self, batch: Batch[Any], ctx: BatchContext) -> None:
        """Apply the batch's effects: by default, the rows go to the handler of the batch's stream's
        subscription. Raising rolls the batch back; the engine retries, then isolates the failing rows
        into dead letters."""
        sub = self.subscription(batch.stream)
        if sub is None or sub.handler is None:
            raise TypeError(f"consumer {self.name}: no handler for stream {batch.stream}")
        await sub.handler(batch.rows, ctx)

    def subscription(self, stream: str) -> Subscription | None:
        for sub in self.subscriptions:
            if sub.stream == stream:
                return sub
        return None
