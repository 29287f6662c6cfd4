"""Fixtures: a real Postgres (DATABASE_URL, or an embedded one), a migrated template, a fresh db per test;
and the layers: every test is marked `unit` (tests/unit: no database, seconds), `integration`
(in-process against Postgres) or `acceptance` (the real CLI as subprocesses) by its folder, so
`pytest -m unit` (`python3 dev.py test --fast`) runs the fast loop."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from floyo_pipeline.embedded import start_embedded, supabase_roles
from tests.support.consumers import EFFECTS_DDL
from tests.support.pg import (
    Cluster,
    TestDatabase,
    connection,
    create_test_database,
    drop_test_database,
    find_owner,
    prepare_template,
)

TESTS = Path(__file__).resolve().parent
LAYERS = {"unit": "unit", "integration": "integration", "acceptance": "acceptance"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        folder = item.path.relative_to(TESTS).parts[0]
        # A folder of its own (the example analyzer) runs in-process against Postgres.
        item.add_marker(getattr(pytest.mark, LAYERS.get(folder, "integration")))


@pytest.fixture(scope="session")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    given = os.environ.get("TEST_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if given:
        yield Cluster(superuser_url=given, owner=await find_owner(given))
        return
    data_dir = Path(tmp_path_factory.mktemp("embedded"))
    started, server = start_embedded(data_dir)
    try:
        pg = await supabase_roles(started)
        yield Cluster(superuser_url=pg.admin_url, owner=pg.owner)
    finally:
        cleanup = getattr(server, "cleanup", None)
        if cleanup is not None:
            cleanup()


@pytest.fixture(scope="session")
def admin_url(cluster: Cluster) -> str:
    """The cluster's superuser (creates and drops databases)."""
    return cluster.superuser_url


@pytest.fixture(scope="session")
async def template(cluster: Cluster) -> Cluster:
    await prepare_template(cluster)
    return cluster


@pytest.fixture
async def database(template: Cluster) -> AsyncIterator[TestDatabase]:
    db = await create_test_database(template)
    try:
        yield db
    finally:
        await drop_test_database(template, db.name)


@pytest.fixture
async def admin(database: TestDatabase) -> AsyncIterator[asyncpg.Connection]:
    """The owner of the schema (Supabase's `postgres`: not a superuser, BYPASSRLS)."""
    async with connection(database.admin_url) as conn:
        yield conn


@pytest.fixture
async def superuser(database: TestDatabase) -> AsyncIterator[asyncpg.Connection]:
    """The cluster's superuser on the test's database (cluster-wide roles, server settings)."""
    async with connection(database.superuser_url) as conn:
        yield conn


@pytest.fixture
async def effects_db(database: TestDatabase, admin: asyncpg.Connection) -> TestDatabase:
    """The test's database with the tables of the effect recorder (tests/support/consumers.py)."""
    await admin.execute(EFFECTS_DDL)
    return database
