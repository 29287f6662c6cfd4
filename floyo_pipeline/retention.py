"""The nightly privacy cleanup: delete telemetry, derived rows and analyzer state older than each user's
`data_retention_days` (14 days without privacy_prefs). Retention is the one place where the wall
clock is right: it is about how long data is kept, not about what happened.

One transaction under `pg_try_advisory_xact_lock`, so only one replica runs it at a time; the others
return at once. `floyo-pipeline retention [--dry-run]` runs it by hand.
"""

from __future__ import annotations

import argparse

import asyncpg

from floyo_pipeline.config import Settings
from floyo_pipeline.connections import open_connection
from floyo_pipeline.logs import get_logger
from floyo_pipeline.queries import Q
from floyo_pipeline.target import database_target

DEFAULT_RETENTION_DAYS = 14
RETENTION_LOCK = 7_310_002
LOCK_NOT_ACQUIRED = "lock_not_acquired"
"""The key `run_retention` returns (with 1) when another session holds the lock; nothing was done."""

# Streams first, then outputs, then the analyzers' state (schema tables, not analyzer code).
TABLES = (
    "telemetry_events",
    "patterns",
    "relationships",
    "insights",
    "file_pattern_state",
    "app_workflow_state",
    "duration_windows",
)

log = get_logger(__name__)


async def run_retention(conn: asyncpg.Connection, dry_run: bool) -> dict[str, int]:
    """Rows deleted per table (or, with `dry_run`, that would be); `{LOCK_NOT_ACQUIRED: 1}` if another
    replica is running it."""
    verb = "count" if dry_run else "delete"
    counts: dict[str, int] = {}
    async with conn.transaction():
        if not await conn.fetchval(Q["retention_try_lock"], RETENTION_LOCK):
            log.info("retention.skipped", reason="lock held by another session")
            return {LOCK_NOT_ACQUIRED: 1}
        for table in TABLES:
            counts[table] = int(await conn.fetchval(Q[f"retention_{verb}_{table}"], DEFAULT_RETENTION_DAYS))
    log.info("retention.done", dry_run=dry_run, **counts)
    return counts


async def cmd_retention(settings: Settings, args: argparse.Namespace) -> int:
    """`floyo-pipeline retention [--dry-run]`: print the rows deleted (or that would be) per table."""
    async with database_target(settings) as target:
        conn = await open_connection(target.service_url, settings.connect_timeout_seconds)
        try:
            counts = await run_retention(conn, dry_run=args.dry_run)
        finally:
            await conn.close()
    if LOCK_NOT_ACQUIRED in counts:
        print("retention: another replica is running it right now; nothing done")
        return 1
    verb = "would delete" if args.dry_run else "deleted"
    for table, n in counts.items():
        print(f"{verb} {n:>8} row(s) from {table}")
    return 0
