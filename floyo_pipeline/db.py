"""Connections: the pool for batches, single connections for LISTEN and the CLI."""

from __future__ import annotations

import json
from typing import Any

import asyncpg


def _loads(text: str) -> Any:
    # Most telemetry metadata is empty: skip the JSON parser for it (a fresh dict each time).
    return {} if text == "{}" else json.loads(text)


async def init_connection(conn: asyncpg.Connection) -> None:
    for typename in ("json", "jsonb"):
        await conn.set_type_codec(
            typename, encoder=json.dumps, decoder=_loads, schema="pg_catalog", format="text"
        )


async def connect(url: str, **kwargs: Any) -> asyncpg.Connection:
    conn: asyncpg.Connection = await asyncpg.connect(url, **kwargs)
    await init_connection(conn)
    return conn


async def create_pool(url: str, size: int, **kwargs: Any) -> asyncpg.Pool:
    pool: asyncpg.Pool = await asyncpg.create_pool(
        url, min_size=1, max_size=size, init=init_connection, **kwargs
    )
    return pool


async def is_superuser(conn: asyncpg.Connection) -> bool:
    return bool(await conn.fetchval("select rolsuper from pg_roles where rolname = current_user"))
