"""The migrator's lock: one `migrate` (or `migrate --down-to`) at a time, and none held up for ever.

Not an advisory lock: any role, anon included, may take any advisory key (on Supabase the owner
cannot revoke `pg_advisory_lock` from PUBLIC), and a migrate waiting for one would hang a deploy's
release command. The lock is the row of `supabase_migrations.floyo_migrate_lock`, created beside the
tracking table in a schema no API role has a privilege on, locked `for update` by a transaction of a
second connection held for the whole run; the migrations' own transactions never touch that row.
Both waits are bounded: the lock itself, and every lock a migration's statement waits for (a DDL
waiting for a table someone holds), by the same `timeout`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import asyncpg

from floyo_pipeline.connections import open_connection
from floyo_pipeline.migrations import MigrationError
from floyo_pipeline.queries import Q

APPLICATION_NAME = "floyo-pipeline migrate"
DEFAULT_TIMEOUT_SECONDS = 60.0
_CREATE_ATTEMPTS = 3


class MigrationLockTimeout(MigrationError):
    """The migration lock was not had within the bound; the message names the session holding it."""


@asynccontextmanager
async def migration_lock(
    conn: asyncpg.Connection,
    url: str,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    connect_timeout: float = 10.0,
) -> AsyncIterator[None]:
    """Hold the migration lock (from a second connection to `url`, the database of `conn`) while the
    block runs, and bound `conn`'s lock waits by `timeout`; MigrationLockTimeout past it."""
    holder = await open_connection(
        url, connect_timeout, server_settings={"application_name": APPLICATION_NAME}
    )
    try:
        await _ensure_lock_row(holder)
        await holder.transaction().start()
        waiting = asyncio.ensure_future(holder.fetchval(Q["migrate_lock_take"]))
        done, _ = await asyncio.wait({waiting}, timeout=timeout)
        if not done:
            blockers = await conn.fetch(Q["migrate_lock_holders"], holder.get_server_pid())
            holder.terminate()
            await asyncio.gather(waiting, return_exceptions=True)
            raise MigrationLockTimeout(_held_by(blockers, timeout))
        waiting.result()
        previous = await conn.fetchval(Q["session_lock_timeout_get"])
        await conn.execute(Q["session_lock_timeout"], f"{round(timeout * 1000)}ms")
        try:
            yield
        finally:
            if not conn.is_closed():
                await conn.execute(Q["session_lock_timeout"], previous)
    finally:
        await _release(holder)


async def _release(holder: asyncpg.Connection) -> None:
    """Close the lock's connection: its transaction ends, and the lock goes to the next migrate."""
    if holder.is_closed():
        return
    try:
        await holder.close(timeout=5)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        holder.terminate()


async def _ensure_lock_row(holder: asyncpg.Connection) -> None:
    for attempt in range(1, _CREATE_ATTEMPTS + 1):
        try:
            await holder.execute(Q["migrate_lock_ensure"])
            return
        except asyncpg.UniqueViolationError:
            # Two first migrates creating the schema or the table at once: the other one made it.
            if attempt == _CREATE_ATTEMPTS:
                raise


def _held_by(blockers: Sequence[asyncpg.Record], timeout: float) -> str:
    sessions = "; ".join(
        f"pid {b['pid']} (user {b['usename']}, application {b['application_name'] or '-'!r}"
        + (f", from {b['client_addr']}" if b["client_addr"] else "")
        + (f", transaction open {b['open_seconds']:.0f} s" if b["open_seconds"] is not None else "")
        + ")"
        for b in blockers
    )
    return (
        f"the migration lock (supabase_migrations.floyo_migrate_lock) is held by "
        f"{sessions or 'a session this role cannot see'}; gave up after {timeout:g} s "
        "(FLOYO_MIGRATE_LOCK_TIMEOUT_SECONDS)"
    )
