"""G10, property-based: whatever row the database accepts into a stream, from any user, the real service
(the CLI, as the least-privileged role) stays up, processes or dead-letters that row, and processes the
rows after it. Hypothesis generates the rows column by column (text of any script and size, timestamps
across Postgres's whole range and beyond Python's, JSON nested, huge or odd), inserts them through SQL
as `authenticated` (telemetry) or `service_role` (metrics_log), then a canary row of another user.

Examples per stream: FLOYO_PROPERTY_EXAMPLES (default 40), so the suite's time stays bounded."""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.analyzers import consenting_users
from tests.support.clients import as_service_role, as_user, caught_up
from tests.support.pg import TestDatabase
from tests.support.service import ServiceProcess, wait_until

EXAMPLES = int(os.environ.get("FLOYO_PROPERTY_EXAMPLES", "40"))
PROPERTY = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
CANARY_APP = "canary"
T0 = datetime(2026, 3, 1, tzinfo=UTC)

# Text as clients send it: any script, control characters, very long values (no NUL: Postgres text
# cannot hold it, so no row carries one).
text = st.one_of(
    st.text(st.characters(exclude_characters="\x00"), min_size=1, max_size=40),
    st.builds(lambda c, n: c * n, st.characters(exclude_characters="\x00"), st.integers(200, 20_000)),
)
timestamps = st.one_of(
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.just(UTC)).map(
        lambda d: d.isoformat()
    ),
    st.sampled_from(
        [
            "infinity",
            "-infinity",
            "4713-01-01 00:00:00+00 BC",
            "294276-12-31 23:59:59+00",
            "20000-01-01",
            "0001-01-01 00:00:00+00",
            "9999-12-31 23:59:59.999999-12",
        ]
    ),
)
json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)
json_values = st.recursive(
    json_leaves,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
)
json_objects = st.one_of(
    st.dictionaries(st.text(max_size=20), json_values, max_size=8).map(json.dumps),
    st.integers(600, 3000).map(lambda depth: '{"deep": ' + "[" * depth + "]" * depth + "}"),
    st.integers(300, 6000).map(lambda digits: '{"n": ' + "9" * digits + "}"),
    st.sampled_from(['{"x": 1e999}', '{"x": -1e999}', '{"x": 1e-999}', '{"": {"": ""}}']),
    st.integers(1, 3).map(lambda mb: '{"blob": "' + "x" * (mb * 1024 * 1024) + '"}'),
)


@dataclass
class World:
    database: TestDatabase
    admin: asyncpg.Connection
    service: ServiceProcess
    users: list[uuid.UUID]
    canary: uuid.UUID
    canaries: int = 0


@pytest.fixture
async def world(database: TestDatabase, admin: asyncpg.Connection) -> AsyncIterator[World]:
    users = await consenting_users(admin, 3, ("vscode", CANARY_APP))
    canary = (await consenting_users(admin, 1, (CANARY_APP,)))[0]
    # Small rows limits and batches, so that the limits themselves are in play.
    service = ServiceProcess(
        database.service_url,
        env={
            "FLOYO_BATCH_SIZE": "7",
            "FLOYO_MAX_ROW_BYTES": str(2 * 1024 * 1024),
            "FLOYO_LOG_LEVEL": "warning",
        },
    ).start()
    try:
        yield World(database, admin, service, users, canary)
    finally:
        assert await service.stop() == 0


async def insert_canary(w: World) -> int:
    w.canaries += 1
    async with as_user(w.admin, w.canary) as c:
        row_id: int = await c.fetchval(
            "insert into public.telemetry_events (user_id, occurred_at, app_id, event_type, file_path)"
            " values ($1, $2, $3, 'file_opened', '/canary/notes.md') returning id",
            w.canary,
            T0 + timedelta(minutes=w.canaries),
            CANARY_APP,
        )
    return row_id


async def settle(w: World, canary_id: int) -> None:
    """Every row processed or dead-lettered, the service alive, and the canary analyzed, not dead-lettered."""

    async def done() -> bool:
        assert w.service.proc is not None and w.service.proc.poll() is None, w.service.stderr[-5:]
        return await caught_up(w.admin)

    await wait_until(done, timeout=60, what="every consumer caught up")
    dead = await w.admin.fetchval(
        "select count(*) from floyo_pipeline.dead_letters where stream = 'telemetry_events' and row_id = $1",
        canary_id,
    )
    assert dead == 0
    count = await w.admin.fetchval(
        "select count from public.patterns where user_id = $1 and file_extension = 'md'", w.canary
    )
    assert count == w.canaries


def batches(row: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[list[dict[str, Any]]]:
    return st.lists(row, min_size=1, max_size=3)


async def insert_each_then_settle(
    w: World, rows: list[dict[str, Any]], insert: Callable[[dict[str, Any]], Awaitable[None]]
) -> None:
    """Insert each row the database accepts (one it refuses is not a row the pipeline can ever see),
    then a canary row, and wait until the service settles (see `settle`)."""
    for row in rows:
        with contextlib.suppress(
            asyncpg.DataError,
            asyncpg.IntegrityConstraintViolationError,
            asyncpg.ProgramLimitExceededError,
        ):
            await insert(row)
    await settle(w, await insert_canary(w))


telemetry_rows = batches(
    st.fixed_dictionaries(
        {
            "user": st.integers(0, 2),
            "occurred_at": timestamps,
            "app_id": st.one_of(st.just("vscode"), text),
            "event_type": st.one_of(
                st.sampled_from(["file_opened", "app_focused", "action_completed"]), text
            ),
            "file_path": st.one_of(st.none(), text),
            "duration_ms": st.one_of(st.none(), st.integers(0, 2**31 - 1)),
            "metadata": json_objects,
        }
    )
)


@PROPERTY
@given(rows=telemetry_rows)
async def test_any_telemetry_row_is_processed_or_dead_lettered(
    world: World, rows: list[dict[str, Any]]
) -> None:
    async def insert(row: dict[str, Any]) -> None:
        user = world.users[row["user"]]
        async with as_user(world.admin, user) as c:
            await c.execute(
                """insert into public.telemetry_events
                     (user_id, occurred_at, app_id, event_type, file_path, duration_ms, metadata)
                   values ($1, $2::text::timestamptz, $3, $4, $5, $6, $7::text::jsonb)""",
                user,
                row["occurred_at"],
                row["app_id"],
                row["event_type"],
                row["file_path"],
                row["duration_ms"],
                row["metadata"],
            )

    await insert_each_then_settle(world, rows, insert)


metrics_rows = batches(
    st.fixed_dictionaries(
        {
            "ts": timestamps,
            "source": st.sampled_from(
                ["vercel", "client", "telemetry", "supabase", "expo", "ci", "pipeline"]
            ),
            "metric": st.one_of(
                json_objects,
                st.dictionaries(
                    st.sampled_from(["lcp", "LCP", "latencyMs", "bundleMB", "queueLength", "name", "value"]),
                    json_leaves,
                    max_size=3,
                ).map(json.dumps),
            ),
        }
    )
)


@PROPERTY
@given(rows=metrics_rows)
async def test_any_metrics_log_row_is_processed_or_dead_lettered(
    world: World, rows: list[dict[str, Any]]
) -> None:
    async def insert(row: dict[str, Any]) -> None:
        async with as_service_role(world.admin) as c:
            await c.execute(
                "insert into public.metrics_log (ts, source, metric)"
                " values ($1::text::timestamptz, $2, $3::text::jsonb)",
                row["ts"],
                row["source"],
                row["metric"],
            )

    await insert_each_then_settle(world, rows, insert)
