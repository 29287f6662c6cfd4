"""The Realtime test double speaks like the real server was observed to (frame by frame, with a raw
websocket client), so that the tests of the Realtime source test against what production sends."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedError, InvalidStatus

from tests.support.pg import TestDatabase
from tests.support.realtime_server import RealtimeTestServer
from tests.support.service import insert_events, make_users

KEY = "double-service-key"
TOPIC = "realtime:floyo_pipeline:telemetry_events"


@pytest.fixture
async def server(database: TestDatabase) -> AsyncIterator[RealtimeTestServer]:
    async with RealtimeTestServer(database.admin_url, keys={KEY: {"role": "service_role"}}) as srv:
        yield srv


def ws_url(server: RealtimeTestServer, key: str) -> str:
    return f"ws://127.0.0.1:{server.port}/realtime/v1/websocket?apikey={key}&vsn=1.0.0"


async def receive(ws: ClientConnection, event: str, timeout: float = 15.0) -> dict[str, Any]:
    """The next frame with this event (heartbeat replies and others are skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), timeout=max(0.1, deadline - time.monotonic())))
        assert isinstance(frame, dict)
        if frame["event"] == event:
            return frame


async def join(ws: ClientConnection, table: str = "telemetry_events", token: str = KEY) -> dict[str, Any]:
    config = {"postgres_changes": [{"event": "INSERT", "schema": "public", "table": table}]}
    await ws.send(
        json.dumps(
            {
                "topic": f"realtime:floyo_pipeline:{table}",
                "event": "phx_join",
                "payload": {"config": config, "access_token": token},
                "ref": "1",
            }
        )
    )
    return await receive(ws, "phx_reply")


@pytest.mark.parametrize(
    ("refusal", "status", "body"),
    [("403", 403, b""), ("401", 401, b'{"error": "Failed to validate JWT signature"}')],
)
async def test_a_wrong_key_is_refused_at_the_upgrade(
    server: RealtimeTestServer, refusal: str, status: int, body: bytes
) -> None:
    server.refusal = "401" if refusal == "401" else "403"
    with pytest.raises(InvalidStatus) as refused:
        async with connect(ws_url(server, "wrong-key")):
            pass
    assert refused.value.response.status_code == status
    assert refused.value.response.body == body
    assert server.stats["auth_refused"] == 1 and server.stats["connections"] == 0


async def test_join_reply_presence_state_then_subscribed_and_frames_as_the_real_server(
    server: RealtimeTestServer, admin: asyncpg.Connection
) -> None:
    async with connect(ws_url(server, KEY)) as ws:
        reply = await join(ws)
        assert set(reply) == {"topic", "event", "payload", "ref"}  # no join_ref
        assert reply["payload"]["status"] == "ok" and reply["ref"] == "1"
        (binding,) = reply["payload"]["response"]["postgres_changes"]
        assert set(binding) == {"id", "event", "schema", "table"}  # no filter key when none was sent
        presence = await receive(ws, "presence_state")
        assert presence["payload"] == {} and presence["ref"] is None
        system = await receive(ws, "system")
        assert system["payload"] == {
            "extension": "postgres_changes",
            "status": "ok",
            "message": "Subscribed to PostgreSQL",
            "channel": "floyo_pipeline:telemetry_events",
        }

        users = await make_users(admin, 1)
        await insert_events(admin, users, 1)
        change = await receive(ws, "postgres_changes")
        assert change["payload"]["ids"] == [binding["id"]]
        data = change["payload"]["data"]
        assert data["type"] == "INSERT" and "eventType" not in data
        assert data["errors"] is None and data["commit_timestamp"].endswith("Z")
        types = {c["name"]: c["type"] for c in data["columns"]}
        assert types["id"] == "int8" and types["user_id"] == "uuid" and types["pipeline_txid"] == "xid8"
        assert types["occurred_at"] == "timestamptz" and types["metadata"] == "jsonb"
        assert isinstance(data["record"]["pipeline_txid"], str) and isinstance(data["record"]["id"], int)
        assert data["record"]["user_id"] == str(users[0])


async def test_a_table_outside_the_publication_gets_a_system_error_after_the_join(
    server: RealtimeTestServer, admin: asyncpg.Connection
) -> None:
    await admin.execute("alter publication supabase_realtime drop table public.metrics_log")
    async with connect(ws_url(server, KEY)) as ws:
        assert (await join(ws, "metrics_log"))["payload"]["status"] == "ok"
        system = await receive(ws, "system")
        assert system["payload"]["status"] == "error" and system["payload"]["extension"] == "postgres_changes"
        assert "Please check Realtime is enabled" in system["payload"]["message"]
        assert "table: metrics_log" in system["payload"]["message"]


async def test_in_session_expiry_repeated_subscribed_and_1012_on_shutdown(server: RealtimeTestServer) -> None:
    async with connect(ws_url(server, KEY)) as ws:
        await join(ws)
        await receive(ws, "system")  # Subscribed
        await server.resubscribe_all()
        again = await receive(ws, "system")
        assert again["payload"]["message"] == "Subscribed to PostgreSQL"  # on the live channel
        await server.expire_tokens()
        expired = await receive(ws, "system")
        assert expired["payload"]["extension"] == "system" and expired["payload"]["status"] == "error"
        assert expired["payload"]["message"] == "Access token has expired"
        closed = await receive(ws, "phx_close")
        assert closed["topic"] == TOPIC
    async with connect(ws_url(server, KEY)) as ws:
        await join(ws)
        await server.restart(down_for=0.1)
        with pytest.raises(ConnectionClosedError) as cut:
            await receive(ws, "never")
        assert cut.value.rcvd is not None and cut.value.rcvd.code == 1012
    async with connect(ws_url(server, KEY)) as ws:
        await join(ws)
        began = time.monotonic()
        await receive(ws, "system")
        assert time.monotonic() - began >= 1.5  # "Subscribed" comes late after a restart


async def test_rls_decides_per_subscriber_and_big_statements_are_hinted_later(
    database: TestDatabase, admin: asyncpg.Connection
) -> None:
    """Each subscriber's role and claims decide what it gets; a 1,000-row statement is delayed
    ~400 ms (the double's model of the real server's per-row work)."""
    anon = "double-anon-key"
    keys: dict[str, dict[str, Any]] = {KEY: {"role": "service_role"}, anon: {"role": "anon"}}
    async with RealtimeTestServer(database.admin_url, keys=keys) as srv:
        async with connect(ws_url(srv, KEY)) as service, connect(ws_url(srv, anon)) as public:
            for ws, token in ((service, KEY), (public, anon)):
                await join(ws, token=token)
                await receive(ws, "system")
            users = await make_users(admin, 1000)
            delay_before = srv.stats["delay_ms"]
            await insert_events(admin, users, 1)
            first = await receive(service, "postgres_changes")
            assert first["payload"]["data"]["errors"] is None
            refused = await receive(public, "postgres_changes")
            assert refused["payload"]["data"]["errors"] == ["Error 401: Unauthorized"]
            assert refused["payload"]["data"]["commit_timestamp"] is None
            assert refused["payload"]["data"]["record"] == {}
        assert srv.stats["delay_ms"] - delay_before >= 400
    assert uuid.UUID(first["payload"]["data"]["record"]["user_id"]) in set(users)
