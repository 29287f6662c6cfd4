"""Test databases: one cluster per session, a migrated template, a fresh database per test."""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from floyo_pipeline.db import connect
from floyo_pipeline.migrations import migrate

TEMPLATE = "floyo_template"
SERVICE_USER = "floyo_service"
_counter = itertools.count(1)


def with_database(url: str, database: str, user: str | None = None) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc
    if user is not None:
        host = netloc.rsplit("@", 1)[-1]
        netloc = f"{user}@{host}"
    return urlunsplit((parts.scheme, netloc, f"/{database}", parts.query, parts.fragment))


@dataclass(frozen=True)
class TestDatabase:
    __test__ = False

    name: str
    admin_url: str
    service_url: str


async def prepare_template(admin_url: str) -> None:
    conn = await connect(admin_url)
    try:
        await conn.execute(f"drop database if exists {TEMPLATE} with (force)")
        await conn.execute(f"create database {TEMPLATE}")
    finally:
        await conn.close()
    tconn = await connect(with_database(admin_url, TEMPLATE))
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


async def create_test_database(admin_url: str) -> TestDatabase:
    name = f"floyo_test_{os.getpid()}_{next(_counter)}"
    conn = await connect(admin_url)
    try:
        await conn.execute(f"create database {name} template {TEMPLATE}")
    finally:
        await conn.close()
    return TestDatabase(
        name=name,
        admin_url=with_database(admin_url, name),
        service_url=with_database(admin_url, name, SERVICE_USER),
    )


async def drop_test_database(admin_url: str, name: str) -> None:
    conn: asyncpg.Connection = await connect(admin_url)
    try:
        await conn.execute(f"drop database if exists {name} with (force)")
    finally:
        await conn.close()
