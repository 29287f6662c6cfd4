"""Operator actions on a database: status, replay, dead letters (shared by the CLI and /status)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from floyo_pipeline.api import Batch, BatchContext, Consumer
from floyo_pipeline.engine.decode import Rejected, RowDecoder
from floyo_pipeline.engine.streams import STREAMS
from floyo_pipeline.queries import Q

# An operator retrying one row by hand may read a larger row than a batch would.
RETRY_MAX_ROW_BYTES = 64 * 1024 * 1024


class OperationError(Exception):
    """The operation was refused or failed; the message says why."""


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


async def status(conn: asyncpg.Connection) -> dict[str, Any]:
    """Per consumer, stream and partition: position, lag, lease; dead-letter counts."""
    partitions: list[dict[str, Any]] = []
    for stream in STREAMS.values():
        for r in await conn.fetch(stream.queries["status"]):
            partitions.append(
                {
                    "consumer": r["consumer"],
                    "stream": r["stream"],
                    "partition": r["partition"],
                    "position": {"txid": r["position_txid"], "id": r["position_id"]},
                    "processed_total": r["processed_total"],
                    "lag_rows": r["lag_rows"],
                    "lag_seconds": round(r["lag_seconds"], 3),
                    "lease_owner": r["lease_owner"],
                    "lease_expires_at": _iso(r["lease_expires_at"]),
                    "lease_epoch": r["lease_epoch"],
                }
            )
    consumers: dict[str, dict[str, Any]] = {}
    for p in partitions:
        summary = consumers.setdefault(
            f"{p['consumer']}/{p['stream']}",
            {
                "consumer": p["consumer"],
                "stream": p["stream"],
                "lag_rows": 0,
                "lag_seconds": 0.0,
                "processed_total": 0,
                "partitions_leased": 0,
            },
        )
        summary["lag_rows"] += p["lag_rows"]
        summary["lag_seconds"] = max(summary["lag_seconds"], p["lag_seconds"])
        summary["processed_total"] += p["processed_total"]
        summary["partitions_leased"] += p["lease_owner"] is not None
    dead: list[dict[str, Any]] = [
        {"consumer": r["consumer"], "stream": r["stream"], "status": r["status"], "count": r["n"]}
        for r in await conn.fetch(Q["dead_letter_counts"])
    ]
    return {"consumers": list(consumers.values()), "partitions": partitions, "dead_letters": dead}


async def replay(conn: asyncpg.Connection, consumer: str, since: datetime | None, force: bool) -> int:
    """Move a consumer's checkpoints back (to the start, or to before `since`); returns rows moved."""
    async with conn.transaction():
        if not await conn.fetchval(Q["replay_has_checkpoints"], consumer):
            raise OperationError(f"{consumer!r} has no checkpoints yet (it has never run): nothing to replay")
        held = await conn.fetchval(Q["replay_held_leases"], consumer)
        if held and not force:
            raise OperationError(
                f"{held} partition lease(s) of {consumer!r} are held by a running replica; "
                "stop it first or pass --force (the replica is fenced and re-reads from the new position)"
            )
        if since is None:
            status_text = await conn.execute(Q["replay_from_start"], consumer)
            return int(status_text.split()[-1])
        moved = 0
        for stream in STREAMS.values():
            moved += int((await conn.execute(stream.queries["replay_since"], consumer, since)).split()[-1])
        return moved


async def dead_letters(conn: asyncpg.Connection, state: str | None = "open") -> list[dict[str, Any]]:
    rows = await conn.fetch(Q["dead_letter_list"], state)
    return [
        {**dict(r), "created_at": _iso(r["created_at"]), "resolved_at": _iso(r["resolved_at"])} for r in rows
    ]


async def discard_dead_letters(conn: asyncpg.Connection, ids: Sequence[int]) -> dict[int, str]:
    """Discard each open dead letter; returns why each of the others was not (missing, already done)."""
    refused: dict[int, str] = {}
    async with conn.transaction():
        for dead_id in ids:
            dead = await conn.fetchrow(Q["dead_letter_get"], dead_id)
            if dead is None:
                refused[dead_id] = "does not exist"
            elif dead["status"] != "open":
                refused[dead_id] = f"already {dead['status']}"
            else:
                await conn.execute(Q["dead_letter_resolve"], dead_id, "discarded")
    return refused


async def retry_dead_letter(conn: asyncpg.Connection, consumers: Sequence[Consumer], dead_id: int) -> None:
    """Run the consumer on the dead-lettered row now; marks it retried only if the handler succeeds."""
    by_name = {c.name: c for c in consumers}
    async with conn.transaction():
        dead = await conn.fetchrow(Q["dead_letter_get"], dead_id)
        if dead is None:
            raise OperationError(f"dead letter {dead_id} does not exist")
        if dead["status"] != "open":
            raise OperationError(f"dead letter {dead_id} is already {dead['status']}")
        consumer = by_name.get(dead["consumer"])
        if consumer is None:
            raise OperationError(f"dead letter {dead_id}: unknown consumer {dead['consumer']!r}")
        stream = STREAMS[dead["stream"]]
        record = await conn.fetchrow(stream.queries["fetch_row"], dead["row_id"], RETRY_MAX_ROW_BYTES)
        if record is None:
            raise OperationError(f"dead letter {dead_id}: row {dead['row_id']} no longer exists")
        row = RowDecoder(stream, RETRY_MAX_ROW_BYTES).decode(record)
        if isinstance(row, Rejected):
            raise OperationError(
                f"dead letter {dead_id}: row {dead['row_id']} still unreadable: {row.message}"
            )
        await consumer.handle(
            Batch(consumer.name, dead["stream"], (dead["partition"],), [row]), BatchContext(conn)
        )
        await conn.execute(Q["dead_letter_resolve"], dead_id, "retried")
