"""Checkpoints and leases: one row per (consumer, stream, partition) holding a cursor and the lease that
fences it, and the replicas that share them. The only code that runs their SQL (sql/checkpoints.sql).

A cursor is a position (txid, id) plus `pending`: transactions that were still open when the cursor
passed their id, each with the last row id of theirs already processed. Every row of the partition at
or before the position has been processed, except rows of pending transactions after their id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import asyncpg

from floyo_pipeline.engine.errors import LeaseLost
from floyo_pipeline.queries import Q

LeaseKey = tuple[str, int]
"""(consumer, partition) within one stream."""
Key = tuple[str, str, int]
"""(consumer, stream, partition)."""


@dataclass
class Lease:
    """A held (consumer, stream, partition): its fencing epoch and its cursor, kept in memory."""

    consumer: str
    stream: str
    partition: int
    epoch: int
    position_txid: int
    position_id: int
    pending: dict[int, int] = field(default_factory=dict)
    processed: int = 0

    @property
    def key(self) -> Key:
        return (self.consumer, self.stream, self.partition)

    @property
    def position(self) -> tuple[int, int]:
        return (self.position_txid, self.position_id)

    def wants_late(self, record: Mapping[str, Any]) -> bool:
        after = self.pending.get(record["pipeline_txid"])
        return after is not None and record["id"] > after

    def wants_forward(self, record: Mapping[str, Any]) -> bool:
        return (record["pipeline_txid"], record["id"]) > self.position


@dataclass
class Read:
    """Rows from one statement and the transactions that were open in its snapshot; `complete` when
    the statement returned every row it could (no row or byte limit cut it short)."""

    rows: list[Any]
    in_progress: set[int]
    complete: bool


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


def moved(before: Mapping[LeaseKey, Lease], after: Mapping[LeaseKey, Lease]) -> bool:
    """Whether any cursor differs between the two."""
    return any(a.position != before[k].position or a.pending != before[k].pending for k, a in after.items())


class CheckpointStore:
    """This process's view of the checkpoint table: its owner name fences everything it writes."""

    def __init__(self, owner: str, replica_id: str) -> None:
        self.owner = owner
        self.replica_id = replica_id

    @staticmethod
    async def ensure(conn: asyncpg.Connection, consumer: str, stream: str) -> None:
        """Create the checkpoint rows of a consumer's stream (at the start, once)."""
        await conn.execute(Q["ensure_checkpoints"], consumer, stream)

    async def forget_predecessors(self, conn: asyncpg.Connection) -> None:
        """Earlier incarnations of this replica are dead: this process has their name."""
        await conn.execute(Q["replica_forget_predecessors"], self.replica_id, self.owner)

    async def heartbeat(self, conn: asyncpg.Connection, ttl: float) -> None:
        await conn.execute(Q["replica_heartbeat"], self.owner, ttl)

    async def renew(self, conn: asyncpg.Connection, ttl: float) -> dict[Key, int]:
        """Extend every lease this process still holds; returns them with their epochs."""
        renewed = await conn.fetch(Q["lease_renew"], self.owner, ttl)
        return {(r["consumer"], r["stream"], r["partition"]): r["lease_epoch"] for r in renewed}

    @staticmethod
    async def live_replicas(conn: asyncpg.Connection) -> int:
        return max(1, int(await conn.fetchval(Q["replicas_live"])))

    @staticmethod
    async def lease_count(conn: asyncpg.Connection, consumers: Sequence[str]) -> int:
        return int(await conn.fetchval(Q["lease_total"], list(consumers)))

    async def claim(
        self,
        conn: asyncpg.Connection,
        consumers: Sequence[str],
        ttl: float,
        limit: int,
        take_over_predecessors: bool,
    ) -> list[Lease]:
        """Free or expired leases (and, when asked, those of this replica's earlier incarnations)."""
        predecessors = self.replica_id if take_over_predecessors else None
        claimed = await conn.fetch(Q["lease_claim"], self.owner, list(consumers), ttl, limit, predecessors)
        return [
            Lease(
                r["consumer"],
                r["stream"],
                r["partition"],
                r["lease_epoch"],
                r["position_txid"],
                r["position_id"],
                {int(t): int(i) for t, i in r["pending"].items()},
            )
            for r in claimed
        ]

    async def release(self, conn: asyncpg.Connection, lease: Lease) -> None:
        await conn.execute(Q["lease_release"], *lease.key, self.owner, lease.epoch)

    async def leave(self, conn: asyncpg.Connection) -> None:
        """Release every lease and the replica row (a graceful stop)."""
        await conn.execute(Q["lease_release_all"], self.owner)
        await conn.execute(Q["replica_remove"], self.owner)

    async def advance(self, conn: asyncpg.Connection, stream: str, changed: Sequence[Lease]) -> None:
        """Store the cursors, fenced: only where this process still holds each lease at its epoch.
        Raises LeaseLost (the transaction must roll back) if any was taken over."""
        status = await conn.execute(
            Q["checkpoint_advance"],
            stream,
            self.owner,
            [a.consumer for a in changed],
            [a.partition for a in changed],
            [a.epoch for a in changed],
            [a.position_txid for a in changed],
            [a.position_id for a in changed],
            [{str(t): i for t, i in a.pending.items()} for a in changed],
            [a.processed for a in changed],
        )
        if status != f"UPDATE {len(changed)}":
            raise LeaseLost(f"{stream}: a lease of this replica was taken over")
