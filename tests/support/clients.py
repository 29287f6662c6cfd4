"""Acting as the database's API roles (as Supabase's API runs a request) and waiting for the service."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from floyo_pipeline.operations import status


@asynccontextmanager
async def as_user(conn: asyncpg.Connection, user: uuid.UUID) -> AsyncIterator[asyncpg.Connection]:
    """A transaction as `authenticated` with the user's JWT claims, as Supabase's API runs inserts."""
    async with conn.transaction():
        await conn.execute("set local role authenticated")
        claims = json.dumps({"sub": str(user), "role": "authenticated"})
        await conn.execute("select set_config('request.jwt.claims', $1, true)", claims)
        yield conn


@asynccontextmanager
async def as_service_role(conn: asyncpg.Connection) -> AsyncIterator[asyncpg.Connection]:
    async with conn.transaction():
        await conn.execute("set local role service_role")
        yield conn


async def lag_by_consumer(conn: asyncpg.Connection) -> dict[tuple[str, str], int]:
    doc = await status(conn)
    return {(c["consumer"], c["stream"]): c["lag_rows"] for c in doc["consumers"]}


async def caught_up(conn: asyncpg.Connection) -> bool:
    lag = await lag_by_consumer(conn)
    return bool(lag) and all(n == 0 for n in lag.values())
