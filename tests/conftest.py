"""Fixtures: a real Postgres (DATABASE_URL, or an embedded one), a migrated template, a fresh db per test."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from floyo_pipeline.db import connect
from floyo_pipeline.embedded import start_embedded
from tests.pg import TestDatabase, create_test_database, drop_test_database, prepare_template


@pytest.fixture(scope="session")
def admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    given = os.environ.get("TEST_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if given:
        yield given
        return
    data_dir = Path(tmp_path_factory.mktemp("embedded"))
    pg, server = start_embedded(data_dir)
    try:
        yield pg.admin_url
    finally:
        cleanup = getattr(server, "cleanup", None)
        if cleanup is not None:
            cleanup()


@pytest.fixture(scope="session")
async def template(admin_url: str) -> str:
    await prepare_template(admin_url)
    return admin_url


@pytest.fixture
async def database(template: str) -> AsyncIterator[TestDatabase]:
    db = await create_test_database(template)
    try:
        yield db
    finally:
        await drop_test_database(template, db.name)


@pytest.fixture
async def admin(database: TestDatabase) -> AsyncIterator[asyncpg.Connection]:
    conn = await connect(database.admin_url)
    try:
        yield conn
    finally:
        await conn.close()
