"""Synthetic telemetry rows, and the ways the benchmark inserts and reads them."""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from bench.queries import BQ

APPS = ("vscode", "slack", "excel", "outlook", "figma", "jira", "terminal")
FILES = ("src/app.py", "src/db.sql", "run.sh", "data/q3.csv", "README.md", "web/main.js", "cfg/app.json")
COLUMNS = ("user_id", "occurred_at", "app_id", "event_type", "file_path", "duration_ms", "metadata")
INSERT_BATCH = 1000
"""Rows a statement, for every batched insert."""
STREAM = "public.telemetry_events"
RAW = "bench_raw"
TICKS_PER_SECOND = 100
"""Statements a second under steady load."""

Row = tuple[uuid.UUID, datetime, str, str, str | None, int | None, dict[str, Any]]


def synthetic_rows(users: Sequence[uuid.UUID], n: int, seed: int, start: datetime) -> list[Row]:
    """A realistic mix: file events with paths, app switches, timed actions; event time advances."""
    rng = random.Random(seed)
    rows: list[Row] = []
    for i in range(n):
        user = users[i % len(users)]
        at = start + timedelta(seconds=i // len(users) * 7 + rng.random())
        kind = i % 3
        if kind == 0:
            rows.append((user, at, "vscode", "file_modified", rng.choice(FILES), None, {}))
        elif kind == 1:
            rows.append((user, at, rng.choice(APPS), "app_focused", None, None, {}))
        else:
            rows.append((user, at, "terminal", "action_completed", None, int(rng.gauss(800, 30)), {}))
    return rows


def backlog_span(rows: int, users: int) -> timedelta:
    """The event time `synthetic_rows` spreads `rows` over."""
    return timedelta(seconds=(rows // max(users, 1) + 1) * 7)


class EventClock:
    """Event time that only moves forward from phase to phase of a run, as a live stream's would, so
    that no phase feeds the analyzers rows older than what they have already seen."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def take(self, span: timedelta) -> datetime:
        """The start of the next `span` of event time."""
        start = self.now
        self.now += span + timedelta(hours=1)
        return start


def columns_of(rows: Sequence[Row]) -> list[list[Any]]:
    return [list(col) for col in zip(*rows, strict=True)]


async def batched_insert(conn: asyncpg.Connection, table: str, rows: Sequence[Row]) -> float:
    """Rows per second, INSERT … SELECT FROM unnest of INSERT_BATCH rows a statement."""
    sql = BQ["insert_unnest"].format(table=table)
    started = time.perf_counter()
    for i in range(0, len(rows), INSERT_BATCH):
        await conn.execute(sql, *columns_of(rows[i : i + INSERT_BATCH]))
    return len(rows) / (time.perf_counter() - started)


async def copy_insert(url: str, table: str, rows: Sequence[Row]) -> float:
    """Rows per second through COPY (binary; asyncpg's own jsonb codec wants text)."""
    records = [(*r[:6], json.dumps(r[6])) for r in rows]
    conn = await asyncpg.connect(url)
    try:
        started = time.perf_counter()
        for i in range(0, len(records), 50_000):
            await conn.copy_records_to_table(table, records=records[i : i + 50_000], columns=COLUMNS)
        return len(rows) / (time.perf_counter() - started)
    finally:
        await conn.close()


async def cursor_read_raw(conn: asyncpg.Connection) -> float:
    """Rows per second of a cursor over the raw table in id order."""
    started = time.perf_counter()
    n = 0
    async with conn.transaction():
        async for _ in conn.cursor(BQ["read_raw_table"], prefetch=1000):
            n += 1
    return n / (time.perf_counter() - started)


async def insert_backlog(conn: asyncpg.Connection, rows: Sequence[Row], *, one_transaction: bool) -> None:
    """Rows into the stream, batched; in one transaction, the service sees them all at once."""
    if not one_transaction:
        for i in range(0, len(rows), 100_000):
            await batched_insert(conn, STREAM, rows[i : i + 100_000])
        return
    async with conn.transaction():
        await batched_insert(conn, STREAM, rows)


async def paced_insert(
    conn: asyncpg.Connection, users: Sequence[uuid.UUID], rate: int, seconds: float, start: datetime
) -> tuple[int, float]:
    """`rate` rows/s into the stream for `seconds`, TICKS_PER_SECOND statements a second, an event-time
    minute apart; returns the rows inserted and the rate achieved."""
    per_tick = max(1, rate // TICKS_PER_SECOND)
    sql = BQ["insert_unnest"].format(table=STREAM)
    ticks = int(seconds * TICKS_PER_SECOND)
    began = time.perf_counter()
    for tick in range(ticks):
        rows = synthetic_rows(users, per_tick, seed=tick, start=start + timedelta(minutes=tick))
        await conn.execute(sql, *columns_of(rows))
        delay = began + (tick + 1) / TICKS_PER_SECOND - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
    return ticks * per_tick, ticks * per_tick / (time.perf_counter() - began)


def paced_span(seconds: float) -> timedelta:
    """The event time `paced_insert` spreads its rows over."""
    return timedelta(minutes=int(seconds * TICKS_PER_SECOND) + 1)
