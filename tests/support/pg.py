"""Test databases: one cluster per session, a migrated template, a fresh database per test.

Like a Supabase project: a superuser (`supabase_admin` on the embedded server) creates the databases
and runs the compatibility bootstrap (Supabase's roles and default privileges); the migrations run
as `postgres`, which is not a superuser, and `admin_url` of a test database connects as it, so a
migration or a test fails here where it would fail on Supabase.
"""

from __future__ import annotations

import itertools
import os
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from floyo_pipeline.connections import connect
from floyo_pipeline.embedded import OWNER
from floyo_pipeline.migrations import ensure_compat, migrate

TEMPLATE = "floyo_template"
SERVICE_USER = "floyo_service"
_counter = itertools.count(1)


@asynccontextmanager
async def connection(url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection for the block, closed after it."""
    conn = await connect(url)
    try:
        yield conn
    finally:
        await conn.close()


def with_database(url: str, database: str, user: str | None = None) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc
    if user is not None:
        host = netloc.rsplit("@", 1)[-1]
        netloc = f"{user}@{host}"
    return urlunsplit((parts.scheme, netloc, f"/{database}", parts.query, parts.fragment))


@dataclass(frozen=True)
class Cluster:
    """The session's server: `superuser_url` creates databases; `owner` runs the migrations."""

    superuser_url: str
    owner: str

    def owner_url(self, database: str) -> str:
        return with_database(self.superuser_url, database, self.owner)


async def find_owner(superuser_url: str) -> str:
    """`postgres` when it is not a superuser (as on Supabase and the embedded server), else the
    superuser itself (a plain server given by TEST_DATABASE_URL: the suite is then kinder)."""
    conn = await connect(superuser_url)
    try:
        owner_is_superuser = await conn.fetchval("select rolsuper from pg_roles where rolname = $1", OWNER)
        me = str(await conn.fetchval("select current_user"))
    finally:
        await conn.close()
    if owner_is_superuser is False:
        return OWNER
    warnings.warn(
        f"no non-superuser `{OWNER}` role on this server: migrations and tests run as {me}",
        stacklevel=2,
    )
    return me


@dataclass(frozen=True)
class TestDatabase:
    __test__ = False

    name: str
    admin_url: str  # the owner (Supabase's postgres)
    service_url: str
    superuser_url: str


async def create_database(cluster: Cluster, name: str, template: str = "template0") -> None:
    """A database as Supabase has it: made by the superuser, `postgres` granted ALL on it."""
    conn = await connect(cluster.superuser_url)
    try:
        await conn.execute(f"create database {name} template {template}")
        await conn.execute(f"grant all on database {name} to {cluster.owner}")
    finally:
        await conn.close()


async def bootstrap(cluster: Cluster, name: str) -> None:
    """What a Supabase project has before any migration: the compatibility bootstrap, as superuser."""
    conn = await connect(with_database(cluster.superuser_url, name))
    try:
        await ensure_compat(conn)
    finally:
        await conn.close()


async def prepare_template(cluster: Cluster) -> None:
    conn = await connect(cluster.superuser_url)
    try:
        await conn.execute(f"drop database if exists {TEMPLATE} with (force)")
    finally:
        await conn.close()
    await create_database(cluster, TEMPLATE)
    await bootstrap(cluster, TEMPLATE)
    tconn = await connect(cluster.owner_url(TEMPLATE))
    try:
        await migrate(tconn)
        await tconn.execute(
            f"""do $$ begin
                  if not exists (select 1 from pg_roles where rolname = '{SERVICE_USER}') then
                    create role {SERVICE_USER} login in role floyo_pipeline_worker;
                  end if;
                end $$"""
        )
    finally:
        await tconn.close()


async def create_test_database(cluster: Cluster) -> TestDatabase:
    name = f"floyo_test_{os.getpid()}_{next(_counter)}"
    await create_database(cluster, name, TEMPLATE)
    return TestDatabase(
        name=name,
        admin_url=cluster.owner_url(name),
        service_url=with_database(cluster.superuser_url, name, SERVICE_USER),
        superuser_url=with_database(cluster.superuser_url, name),
    )


async def drop_test_database(cluster: Cluster, name: str) -> None:
    conn: asyncpg.Connection = await connect(cluster.superuser_url)
    try:
        await conn.execute(f"drop database if exists {name} with (force)")
    finally:
        await conn.close()
