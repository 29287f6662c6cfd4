"""Insights live in the app: a user watching through Realtime with their own JWT receives their new
suggestions and insights the moment the pipeline writes them, and never another user's (the example
subscriber in examples/, against the Realtime test double, which applies row level security as
each subscriber with the claims of its token)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import jwt
import pytest

from examples.live_insights import watch
from tests.support.pg import TestDatabase
from tests.support.realtime_server import RealtimeTestServer
from tests.support.service import wait_until

SECRET = "test-jwt-secret-0f6a1b2c3d4e5f60718293a4b5c6d7e8"
ANON_KEY = "test-anon-key-5b1c"


def access_token(user: uuid.UUID) -> str:
    """A Supabase Auth access token of `user`, as the app holds it."""
    claims = {
        "sub": str(user),
        "role": "authenticated",
        "aud": "authenticated",
        "exp": int(time.time()) + 3600,
    }
    return jwt.encode(claims, SECRET, algorithm="HS256")


@pytest.fixture
async def server(database: TestDatabase) -> AsyncIterator[RealtimeTestServer]:
    async with RealtimeTestServer(
        database.admin_url, keys={ANON_KEY: {"role": "anon"}}, jwt_secret=SECRET
    ) as srv:
        yield srv


class Watcher:
    """The example subscriber, run as one user's app."""

    def __init__(self, server: RealtimeTestServer, user: uuid.UUID, own_rows_filter: bool) -> None:
        self.rows: list[tuple[str, dict[str, Any]]] = []
        self.ready = asyncio.Event()
        self.task = asyncio.create_task(
            watch(
                server.url,
                ANON_KEY,
                access_token(user),
                lambda table, row: self.rows.append((table, row)),
                ready=self.ready,
                own_rows_filter=own_rows_filter,
            )
        )

    def got(self, table: str) -> list[Any]:
        return [
            row["suggestion_key" if table == "suggestions" else "fingerprint"]
            for t, row in self.rows
            if t == table
        ]

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def write_outputs(conn: asyncpg.Connection, a: uuid.UUID, b: uuid.UUID) -> None:
    """What the pipeline writes, in this order: B's suggestion before A's, a global insight before A's."""
    for user, key in ((b, "b-1"), (a, "a-1")):
        await conn.execute(
            """insert into public.suggestions (user_id, suggestion_key, trigger, suggested_integration,
                                               reasoning, confidence, created_at)
               values ($1, $2, 'py files', 'Dropbox sync', 'you use .py a lot', 0.4, now())""",
            user,
            key,
        )
    insights: list[tuple[uuid.UUID | None, str]] = [(None, "global-1"), (b, "b-insight"), (a, "a-insight")]
    for owner, fingerprint in insights:
        await conn.execute(
            """insert into public.insights (user_id, kind, severity, title, body, fingerprint, first_seen,
                                            last_seen)
               values ($1, 'performance_regression', 'warning', 't', 'b', $2, now(), now())""",
            owner,
            fingerprint,
        )


@pytest.mark.parametrize("own_rows_filter", [False, True], ids=["rls-only", "rls-and-filter"])
async def test_each_user_receives_their_own_new_rows_and_never_another_users(
    database: TestDatabase, admin: asyncpg.Connection, server: RealtimeTestServer, own_rows_filter: bool
) -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    await admin.execute("insert into auth.users (id) values ($1), ($2)", a, b)
    watchers = {user: Watcher(server, user, own_rows_filter) for user in (a, b)}
    try:
        for watcher in watchers.values():
            await asyncio.wait_for(watcher.ready.wait(), timeout=30)
        pipeline = await asyncpg.connect(database.service_url)  # the pipeline's own role
        try:
            await write_outputs(pipeline, a, b)
        finally:
            await pipeline.close()

        own = {a: ("a-1", "a-insight"), b: ("b-1", "b-insight")}

        async def delivered() -> bool:
            return all(
                own[user][0] in w.got("suggestions") and own[user][1] in w.got("insights")
                for user, w in watchers.items()
            )

        await wait_until(delivered, timeout=30, what="each user's suggestion and insight")
        # Rows are delivered in commit order per table, and each user's own came last: anything of
        # another user would have arrived before.
        assert watchers[a].got("suggestions") == ["a-1"] and watchers[a].got("insights") == ["a-insight"]
        assert watchers[b].got("suggestions") == ["b-1"] and watchers[b].got("insights") == ["b-insight"]
        assert all(str(row["user_id"]) == str(user) for user, w in watchers.items() for _, row in w.rows)
        assert server.stats["unauthorized_sent"] == 0
    finally:
        for watcher in watchers.values():
            await watcher.stop()


async def test_the_anon_key_alone_receives_no_rows(
    database: TestDatabase, admin: asyncpg.Connection, server: RealtimeTestServer
) -> None:
    """Without a user's token the subscriber is anon, which may read neither table."""
    user = uuid.uuid4()
    await admin.execute("insert into auth.users (id) values ($1)", user)
    received: list[tuple[str, dict[str, Any]]] = []
    ready = asyncio.Event()
    anon_claims = {"sub": str(user), "role": "anon", "exp": int(time.time()) + 3600}
    task = asyncio.create_task(
        watch(
            server.url,
            ANON_KEY,
            jwt.encode(anon_claims, SECRET, algorithm="HS256"),
            lambda table, row: received.append((table, row)),
            ready=ready,
        )
    )
    try:
        await asyncio.wait_for(ready.wait(), timeout=30)
        await write_outputs(admin, user, user)

        async def refused() -> bool:
            return server.stats["unauthorized_sent"] >= 4

        await wait_until(refused, timeout=30, what="Error 401 frames")
        assert received == []
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
