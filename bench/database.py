"""The migrated database the benchmark runs on, its synthetic users, and what it reads back from it
(rows processed, connections in use, table sizes)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from bench.queries import BQ
from floyo_pipeline.config import load_settings
from floyo_pipeline.connections import connect
from floyo_pipeline.embedded import SERVICE_ROLE
from floyo_pipeline.migrations import migrate
from floyo_pipeline.queries import Q
from floyo_pipeline.target import Target, database_target

USER_SETTINGS = frozenset({"privacy_prefs", "app_allowlist", "signal_toggles"})
"""Tables of public that users fill, not the pipeline."""


@asynccontextmanager
async def bench_database(tmp: Path) -> AsyncIterator[Target]:
    """A migrated database: BENCH_DATABASE_URL (its owner; the service gets a login role granted
    floyo_pipeline_worker beside it), or an embedded Postgres in `tmp`."""
    given = os.environ.get("BENCH_DATABASE_URL")
    if not given:
        async with database_target(load_settings(embedded=True, data_dir=tmp)) as target:
            yield target
        return
    conn = await connect(given)
    try:
        await migrate(conn)
        await conn.execute(Q["ensure_service_login_role"].replace("$role", SERVICE_ROLE))
    finally:
        await conn.close()
    parts = urlsplit(given)
    service = urlunsplit(parts._replace(netloc=f"{SERVICE_ROLE}@{parts.netloc.rsplit('@', 1)[-1]}"))
    yield Target(admin_url=given, service_url=service, embedded=False)


async def seed_users(conn: asyncpg.Connection, n: int, apps: Sequence[str]) -> list[uuid.UUID]:
    """`n` users who consent to everything, with every app in `apps` allowed."""
    users = [uuid.uuid4() for _ in range(n)]
    await conn.execute(BQ["seed_users"], users)
    await conn.execute(BQ["seed_privacy_prefs"], users)
    await conn.execute(BQ["seed_allowlist"], users, list(apps))
    return users


async def processed_rows(conn: asyncpg.Connection) -> int:
    """Telemetry rows every consumer has processed."""
    return int(await conn.fetchval(BQ["processed_rows"]))


async def service_connections(conn: asyncpg.Connection) -> int:
    """Connections the service role holds now (all replicas)."""
    return int(await conn.fetchval(BQ["connections_of_role"], SERVICE_ROLE))


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def table_sizes(conn: asyncpg.Connection, schemas: Sequence[str]) -> list[dict[str, Any]]:
    """Every table of `schemas`: schema, name, exact rows, table_bytes, index_bytes."""
    tables = [dict(r) for r in await conn.fetch(BQ["table_sizes"], list(schemas))]
    for t in tables:
        name = f"{_quoted(t['schema'])}.{_quoted(t['name'])}"
        t["rows"] = int(await conn.fetchval(BQ["count_rows"].format(table=name)))
    return tables


async def index_sizes(conn: asyncpg.Connection, table: str) -> dict[str, int]:
    """Bytes of each index of `table`, by name."""
    return {r["name"]: int(r["bytes"]) for r in await conn.fetch(BQ["index_sizes"], table)}


async def pipeline_tables(conn: asyncpg.Connection) -> dict[str, list[dict[str, Any]]]:
    """Sizes of the tables by kind: the streams, what the pipeline writes (its outputs: the rest of
    public, less the users' own settings) and its state (the floyo_pipeline schema: analyzer state,
    checkpoints, dead letters)."""
    streams = {r["stream"] for r in await conn.fetch(BQ["stream_tables"])}
    tables = await table_sizes(conn, ["public", "floyo_pipeline"])
    public = [t for t in tables if t["schema"] == "public"]
    return {
        "streams": [t for t in public if t["name"] in streams],
        "outputs": [t for t in public if t["name"] not in streams and t["name"] not in USER_SETTINGS],
        "state": [t for t in tables if t["schema"] == "floyo_pipeline"],
    }
