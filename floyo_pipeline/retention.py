"""The nightly privacy cleanup: delete telemetry, derived rows and analyzer state older than each user's
`data_retention_days` (14 days without privacy_prefs). Retention is the one place where the wall
clock is right: it is about how long data is kept, not about what happened.

The tables come from their declarations: each stream's age column (floyo_pipeline.engine.streams)
and each table the consumers declare with one (`Consumer.tables`); the queries are rendered from
floyo_pipeline/sql/templates/retention.sql. One transaction holding the `retention` row of
`floyo_pipeline.locks` (floyo_pipeline.job_locks: no API role can take it), so only one replica
deletes at a time: the scheduled job waits for the holder (which may be the session of a process
killed mid-run, still rolling back), `floyo-pipeline retention [--dry-run]` (by hand) returns at once.
A dry run only counts and takes no lock.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import asyncpg

from floyo_pipeline.api import Consumer, Table
from floyo_pipeline.config import Settings
from floyo_pipeline.connections import open_connection
from floyo_pipeline.engine.streams import STREAMS
from floyo_pipeline.job_locks import try_lock, wait_lock
from floyo_pipeline.logs import get_logger
from floyo_pipeline.queries import load_queries
from floyo_pipeline.storage import declared_tables
from floyo_pipeline.target import database_target

DEFAULT_RETENTION_DAYS = 14
RETENTION_LOCK = "retention"
LOCK_NOT_ACQUIRED = "lock_not_acquired"
"""The key `run_retention` returns (with 1) when another session holds the lock; nothing was done."""

Verb = Literal["count", "delete"]
_TEMPLATE = load_queries("floyo_pipeline:sql/templates/retention.sql")

log = get_logger(__name__)


def retention_tables(consumers: Sequence[Consumer]) -> tuple[Table, ...]:
    """The tables retention cleans, in the order it reports them: the streams, then the consumers'
    public outputs, then their private state (every table with an age column)."""
    streams = [s.table for s in STREAMS.values()]
    declared = sorted(declared_tables(consumers), key=lambda t: t.schema != "public")
    return tuple(t for t in (*streams, *declared) if t.age_column is not None)


def retention_query(table: Table, verb: Verb) -> str:
    """The `verb` query for `table`: the rows that have outlived their user's retention."""
    user = f"t.{table.user_column}" if table.user_column else "null"
    expired = _TEMPLATE["expired"].format(age=table.age_column, user=user)
    return _TEMPLATE[verb].format(table=table.name, expired=expired)


async def run_retention(
    conn: asyncpg.Connection, consumers: Sequence[Consumer], dry_run: bool, wait: bool = False
) -> dict[str, int]:
    """Rows deleted per table, by its name without the schema (or, with `dry_run`, that would be);
    `{LOCK_NOT_ACQUIRED: 1}` if another session is running it, unless `wait`: then after it."""
    verb: Verb = "count" if dry_run else "delete"
    queries = {t.bare_name: retention_query(t, verb) for t in retention_tables(consumers)}
    counts: dict[str, int] = {}
    async with conn.transaction():
        # A dry run only counts: it must not make a concurrent real run skip.
        if not dry_run:
            if wait:
                await wait_lock(conn, RETENTION_LOCK)
            elif not await try_lock(conn, RETENTION_LOCK):
                log.info("retention.skipped", reason="another session is running it")
                return {LOCK_NOT_ACQUIRED: 1}
        for table, query in queries.items():
            counts[table] = int(await conn.fetchval(query, DEFAULT_RETENTION_DAYS))
    log.info("retention.done", dry_run=dry_run, **counts)
    return counts


async def print_retention(settings: Settings, consumers: Sequence[Consumer], dry_run: bool) -> int:
    """`floyo-pipeline retention [--dry-run]`: print the rows deleted (or that would be) per table."""
    async with database_target(settings) as target:
        conn = await open_connection(target.service_url, settings.connect_timeout_seconds)
        try:
            counts = await run_retention(conn, consumers, dry_run=dry_run)
        finally:
            await conn.close()
    if LOCK_NOT_ACQUIRED in counts:
        print("retention: another replica is running it right now; nothing done")
        return 1
    verb = "would delete" if dry_run else "deleted"
    for table, n in counts.items():
        print(f"{verb} {n:>8} row(s) from {table}")
    return 0
