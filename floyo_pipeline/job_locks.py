"""Named locks for the scheduled jobs: a row of `floyo_pipeline.locks`, locked for a transaction.

Not advisory locks: `pg_advisory_lock` is executable by every role (anon included, and on Supabase
the owner cannot revoke it), so a key the pipeline waits for or skips on is a key anyone can hold.
The private schema's table is reachable by the worker role and the owner only.
"""

from __future__ import annotations

import asyncpg

from floyo_pipeline.queries import Q


async def try_lock(conn: asyncpg.Connection, name: str) -> bool:
    """Lock `name` until the end of `conn`'s transaction; False at once if another session holds it."""
    await conn.execute(Q["job_lock_ensure"], name)
    return await conn.fetchval(Q["job_lock_try"], name) is not None


async def wait_lock(conn: asyncpg.Connection, name: str) -> None:
    """Lock `name` until the end of `conn`'s transaction, waiting for its holder."""
    await conn.execute(Q["job_lock_ensure"], name)
    await conn.fetchval(Q["job_lock_wait"], name)
