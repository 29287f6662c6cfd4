"""Realtime wake-ups: the real `realtime` client against the Realtime test double in
tests/support/realtime_server.py (which behaves as the real server was observed to), fed by a real Postgres
(never a live Supabase project).

The poll safety net runs every 60 s here and every wait is shorter, so prompt processing can only
come from a Realtime hint or the catch-up pass after a (re)subscribe.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import asyncpg
import pytest
from structlog.testing import capture_logs

from floyo_pipeline import metrics
from floyo_pipeline.engine.realtime import RealtimeSource
from tests.support.consumers import EFFECTS_DDL, EffectRecorder
from tests.support.ops import http, serving
from tests.support.pg import TestDatabase
from tests.support.realtime_server import RealtimeTestServer
from tests.support.service import (
    ServiceProcess,
    fresh_env,
    insert_events,
    make_users,
    run_cli,
    running_service,
    wait_until,
)

KEY = "test-service-role-key-5f2c9a"
ANON_KEY = "test-anon-key-77d01e"
POLL_SECONDS = 60.0  # the safety net stays out of the way
WAIT = 30.0  # generous, and still below the poll interval
_TOPIC = "realtime:floyo_pipeline:telemetry_events"
JUNK_FRAMES: tuple[str | bytes, ...] = (
    "this is not json",
    b"\x00\xff binary",
    "[1, 2, 3]",
    '{"event": "postgres_changes", "topic": "' + _TOPIC + '", "payload": {"ids": "x"}, "ref": null}',
    '{"event": "who_knows", "topic": "' + _TOPIC + '", "payload": {}, "ref": null}',
)


@pytest.fixture
async def server(database: TestDatabase) -> AsyncIterator[RealtimeTestServer]:
    async with RealtimeTestServer(database.admin_url, keys={KEY: {"role": "service_role"}}) as srv:
        yield srv


def fast_source(server: RealtimeTestServer, database: TestDatabase, key: str = KEY) -> RealtimeSource:
    return RealtimeSource(
        server.url,
        key,
        database_url=database.service_url,
        check_interval=0.2,
        backoff_base=0.05,
        backoff_cap=0.5,
        slow_backoff_base=0.2,
        slow_backoff_cap=1.0,
        publication_check_interval=0.3,
    )


def wakeups() -> float:
    return metrics.REGISTRY.get_sample_value("floyo_pipeline_wakeups_total", {"source": "realtime"}) or 0.0


def gauge() -> float | None:
    return metrics.REGISTRY.get_sample_value("floyo_pipeline_source_connected", {"source": "realtime"})


def problem(kind: str) -> float | None:
    return metrics.REGISTRY.get_sample_value(
        "floyo_pipeline_source_problem", {"source": "realtime", "problem": kind}
    )


def check(predicate: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def run() -> bool:
        return predicate()

    return run


def events(logs: Sequence[Mapping[str, Any]], name: str) -> list[Mapping[str, Any]]:
    return [e for e in logs if e["event"] == name]


async def effects(admin: asyncpg.Connection) -> tuple[int, int]:
    row = await admin.fetchrow("select count(*) as n, count(distinct row_id) as d from public.test_effects")
    assert row is not None
    return int(row["n"]), int(row["d"])


async def wait_effects(admin: asyncpg.Connection, expected: int, what: str) -> None:
    async def done() -> bool:
        return (await effects(admin))[0] >= expected

    await wait_until(done, timeout=WAIT, what=what)
    assert await effects(admin) == (expected, expected)  # exactly once in effect


async def wait_leases(admin: asyncpg.Connection) -> None:
    """Every stream reader has started (so later rows need a wake-up to be seen)."""

    async def held() -> bool:
        total = await admin.fetchval(
            "select count(*) from floyo_pipeline.checkpoints where consumer = 'recorder'"
        )
        leased = await admin.fetchval(
            "select count(*) from floyo_pipeline.checkpoints"
            " where consumer = 'recorder' and lease_owner is not null"
        )
        return bool(total) and leased == total

    await wait_until(held, timeout=WAIT, what="all leases held")


@dataclass
class Realtime:
    """The service woken by a fast Realtime source, as a test sees it."""

    source: RealtimeSource
    users: list[uuid.UUID]
    logs: list[MutableMapping[str, Any]]
    task: asyncio.Task[int]
    base: str  # the HTTP port's address, where the test asked for it

    async def connected(self, what: str = "realtime ready") -> None:
        await wait_until(check(lambda: self.source.health.connected), timeout=WAIT, what=what)


@asynccontextmanager
async def realtime_service(
    database: TestDatabase,
    admin: asyncpg.Connection,
    server: RealtimeTestServer,
    users: int = 3,
    key: str = KEY,
    ready: bool = True,
    logged: bool = True,
    http_port: bool = False,
) -> AsyncIterator[Realtime]:
    """The effects table, `users` users, and the service recording effects, woken by a fast Realtime
    source and polling only every minute; its logs captured if `logged`, its HTTP port if `http_port`.
    With `ready` the block starts once the source is connected and every lease is held."""
    await admin.execute(EFFECTS_DDL)
    made = await make_users(admin, users)
    source = fast_source(server, database, key)
    options: dict[str, Any] = {"sources": [source], "poll_interval_seconds": POLL_SECONDS}
    async with AsyncExitStack() as stack:
        logs = stack.enter_context(capture_logs()) if logged else []
        if http_port:
            svc = await stack.enter_async_context(
                serving(database.service_url, [EffectRecorder()], **options)
            )
            run = Realtime(source, made, logs, svc.task, svc.base)
        else:
            task = await stack.enter_async_context(
                running_service(database.service_url, [EffectRecorder()], **options)
            )
            run = Realtime(source, made, logs, task, "")
        if ready:
            await run.connected()
            await wait_leases(admin)
        yield run


async def test_inserted_rows_wake_the_service_through_realtime(
    database: TestDatabase, admin: asyncpg.Connection, server: RealtimeTestServer
) -> None:
    async with realtime_service(database, admin, server, users=4, logged=False) as rt:
        assert gauge() == 1
        assert rt.source.health.streams == {"telemetry_events": None, "metrics_log": None}
        total = 0
        for round_ in range(2):  # the second round starts with every worker idle
            before, sent = wakeups(), server.stats["changes_sent"]
            total += await insert_events(admin, rt.users, 5)
            await wait_effects(admin, total, f"effects of round {round_}")
            # A reader that was already reading (the pass after taking its leases) may apply the rows
            # before the server's replication poll sends them: the change and the hint still come.
            sent_more = partial(lambda n: server.stats["changes_sent"] > n, sent)
            woken = partial(lambda n: wakeups() > n, before)
            await wait_until(check(sent_more), timeout=WAIT, what="change sent")
            await wait_until(check(woken), timeout=WAIT, what="realtime wake-up")
        assert server.stats["connections"] == 2  # one websocket per stream
    assert rt.source.health.reason == "stopped"


async def test_rows_inserted_before_subscribed_to_postgresql_are_caught_up(
    database: TestDatabase, admin: asyncpg.Connection, server: RealtimeTestServer
) -> None:
    server.subscribed_gate.clear()  # SUBSCRIBED replies go out; "Subscribed to PostgreSQL" waits
    async with realtime_service(database, admin, server, users=4, ready=False, logged=False) as rt:
        await wait_until(check(lambda: server.awaiting_subscribed == 2), timeout=WAIT, what="joins")
        await wait_leases(admin)
        assert not rt.source.health.connected
        assert "Subscribed to PostgreSQL" in (rt.source.health.reason or "")
        total = await insert_events(admin, rt.users, 3)
        server.subscribed_gate.set()
        await rt.connected()
        await wait_effects(admin, total, "rows of the first gap")

        # The same gap after a reconnect: the server never delivers these rows, the catch-up does.
        server.subscribed_gate.clear()
        server.drop_all()
        await wait_until(check(lambda: not rt.source.health.connected), timeout=WAIT, what="drop noticed")
        await wait_until(check(lambda: server.awaiting_subscribed == 2), timeout=WAIT, what="rejoins")
        assert not rt.source.health.connected
        total += await insert_events(admin, rt.users, 3)
        server.subscribed_gate.set()
        await wait_effects(admin, total, "rows of the second gap")
        assert rt.source.health.connected
    assert server.stats["changes_sent"] == 0


async def test_recovers_from_drop_and_refused_reconnects_exactly_once(
    database: TestDatabase, admin: asyncpg.Connection, server: RealtimeTestServer
) -> None:
    async with realtime_service(database, admin, server, users=5, logged=False) as rt:
        total = await insert_events(admin, rt.users, 4)
        await wait_effects(admin, total, "effects before the outage")

        server.refusing = True
        server.drop_all()
        await wait_until(check(lambda: not rt.source.health.connected), timeout=WAIT, what="drop noticed")
        total += await insert_events(admin, rt.users, 4)
        # More attempts than the client's own reconnect loop would ever make (it gives up after 5).
        await wait_until(
            check(lambda: server.stats["upgrades_refused"] >= 7), timeout=WAIT, what="refused retries"
        )
        assert not rt.source.health.connected
        assert "503" in (rt.source.health.reason or "")
        assert gauge() == 0
        assert problem("auth") == 0  # an outage, not a key problem
        total += await insert_events(admin, rt.users, 4)

        server.refusing = False
        await rt.connected("recovery")
        await wait_effects(admin, total, "effects of rows inserted during the outage")
        assert gauge() == 1
        total += await insert_events(admin, rt.users, 2)
        await wait_effects(admin, total, "effects after recovery")
        assert not rt.task.done()


@pytest.mark.parametrize(
    ("refusal", "status", "body"),
    [("403", 403, ""), ("401", 401, '{"error": "Failed to validate JWT signature"}')],
)
async def test_key_refused_at_the_upgrade_is_named_backs_off_slowly_and_shows_in_readyz(
    database: TestDatabase,
    admin: asyncpg.Connection,
    server: RealtimeTestServer,
    refusal: str,
    status: int,
    body: str,
) -> None:
    """A wrong or expired key: the real server refuses the websocket upgrade (v2.28: 403 with an
    empty body; upstream: 401 with a JSON reason). Processing goes on at the poll interval, so the
    service stays ready; /readyz, the logs and the problem gauge say why hints are missing."""
    server.keys = {"some-other-key": {"role": "service_role"}}
    server.refusal = "401" if refusal == "401" else "403"
    async with realtime_service(database, admin, server, ready=False, http_port=True) as rt:
        await wait_until(
            check(lambda: len(events(rt.logs, "source.reconnecting")) >= 4), timeout=WAIT, what="refusals"
        )
        ready = await http(rt.base + "/readyz")
        assert ready.status == 200, ready.body
        doc = ready.json()
        assert doc["ready"] is True and doc["reasons"] == []
        assert doc["wakeup"]["mode"] == "poll-fallback"
        (realtime,) = [s for s in doc["wakeup"]["sources"] if s["name"] == "realtime"]
        assert realtime["connected"] is False
        assert f"auth refused: HTTP {status}" in realtime["reason"]
        assert set(realtime["streams"]) == {"telemetry_events", "metrics_log"}
        assert all(f"HTTP {status}" in why for why in realtime["streams"].values())
        assert len(doc["degraded"]) == 1 and "realtime" in doc["degraded"][0]
        assert "poll interval (60s)" in doc["degraded"][0]
        assert problem("auth") == 1 and gauge() == 0

        server.keys[KEY] = {"role": "service_role"}
        await rt.connected("key accepted")
        assert problem("auth") == 0
        await wait_leases(admin)
        total = await insert_events(admin, rt.users, 3)
        await wait_effects(admin, total, "effects after the key was accepted")
        assert (await http(rt.base + "/readyz")).json()["degraded"] == []
    refused = events(rt.logs, "source.auth_refused")
    assert refused and all(e["status"] == status and e["body"] == body for e in refused)
    assert refused[0]["log_level"] == "error"
    assert {e["stream"] for e in refused} == {"telemetry_events", "metrics_log"}
    slow = [e for e in events(rt.logs, "source.reconnecting") if "auth refused" in e["reason"]]
    assert slow and all(e["backoff"] == "slow" for e in slow)
    assert server.stats["joins_refused"] == 0  # refused at the upgrade, never at a join
    assert KEY not in repr(rt.logs)


async def test_refused_join_is_reported_and_retried_until_accepted(
    database: TestDatabase, admin: asyncpg.Connection, server: RealtimeTestServer
) -> None:
    server.join_error = "InvalidJWTToken: Token has expired 12 seconds ago"
    async with realtime_service(database, admin, server, ready=False) as rt:
        await wait_until(
            check(lambda: server.stats["joins_refused"] >= 3), timeout=WAIT, what="refused joins"
        )
        assert not rt.source.health.connected
        assert "InvalidJWTToken" in (rt.source.health.reason or "")
        assert not rt.task.done()

        server.join_error = None
        await rt.connected("accepted")
        await wait_leases(admin)
        total = await insert_events(admin, rt.users, 3)
        await wait_effects(admin, total, "effects after the join was accepted")
    refused = events(rt.logs, "source.join_refused")
    assert refused and all("InvalidJWTToken" in e["reason"] for e in refused)
    assert all(e["backoff"] == "slow" for e in events(rt.logs, "source.reconnecting"))
    assert KEY not in repr(rt.logs)


async def test_token_expiry_in_session_is_named_and_the_session_restarts(
    database: TestDatabase, admin: asyncpg.Connection, server: RealtimeTestServer
) -> None:
    """The server ends a channel whose token expired: a `system` error, then `phx_close`."""
    async with realtime_service(database, admin, server, ready=False) as rt:
        await rt.connected()
        await server.expire_tokens()
        await wait_until(
            check(lambda: len(events(rt.logs, "source.token_expired")) == 2), timeout=WAIT, what="expiry"
        )
        await wait_until(check(lambda: server.stats["connections"] >= 4), timeout=WAIT, what="reconnect")
        await rt.connected("ready again")
        await wait_leases(admin)
        total = await insert_events(admin, rt.users, 3)
        await wait_effects(admin, total, "effects after the new session")
    assert server.stats["expired"] == 2
    expired = events(rt.logs, "source.token_expired")
    assert {e["stream"] for e in expired} == {"telemetry_events", "metrics_log"}
    assert all("Access token has expired" in e["message"] for e in expired)
    after = [e for e in events(rt.logs, "source.reconnecting") if "expired" in e["reason"]]
    assert len(after) == 2 and all(e["backoff"] == "slow" for e in after)


async def test_a_key_without_read_access_is_reported_as_unauthorized(
    database: TestDatabase, admin: asyncpg.Connection, server: RealtimeTestServer
) -> None:
    """The anon key connects and subscribes, then every change arrives as a frame with
    "Error 401: Unauthorized" and no row, which the client cannot parse: one `source.unauthorized`
    per stream and session (not a warning per row), not connected, and still a hint."""
    server.keys = {KEY: {"role": "service_role"}, ANON_KEY: {"role": "anon"}}
    async with realtime_service(database, admin, server, key=ANON_KEY, ready=False) as rt:
        await wait_until(check(lambda: server.listening == 2), timeout=WAIT, what="subscribed")
        await wait_leases(admin)
        total = 0
        for round_ in range(3):
            total += await insert_events(admin, rt.users, 2)
            await wait_effects(admin, total, f"effects of round {round_} (hinted by the 401 frames)")
        await wait_until(
            check(lambda: not rt.source.health.connected), timeout=WAIT, what="reported unauthorized"
        )
        reason = rt.source.health.streams["telemetry_events"] or ""
        assert "unauthorized" in reason and "Error 401: Unauthorized" in reason
        assert rt.source.health.streams["metrics_log"] is None  # no change there yet
        assert problem("auth") == 1 and gauge() == 0
    assert server.stats["unauthorized_sent"] >= 3 and server.stats["changes_sent"] == 0
    unauthorized = events(rt.logs, "source.unauthorized")
    assert len(unauthorized) == 1
    assert unauthorized[0]["table"] == "public.telemetry_events" and unauthorized[0]["log_level"] == "error"
    assert events(rt.logs, "source.malformed_message") == []
    assert server.stats["connections"] == 2  # the sessions were kept


async def test_a_stream_missing_from_the_publication_does_not_stop_the_others_hints(
    database: TestDatabase, admin: asyncpg.Connection, server: RealtimeTestServer
) -> None:
    """The server answers a subscription to a table outside the publication with a `system` error
    after a successful join: only that stream's session is affected, the event names the table."""
    await admin.execute("alter publication supabase_realtime drop table public.metrics_log")
    async with realtime_service(database, admin, server, ready=False) as rt:
        await wait_until(
            check(lambda: rt.source.health.streams.get("telemetry_events", "") is None),
            timeout=WAIT,
            what="telemetry_events listening",
        )
        await wait_until(
            check(lambda: len(events(rt.logs, "source.stream_error")) >= 2), timeout=WAIT, what="errors"
        )
        assert not rt.source.health.connected
        assert "not in publication supabase_realtime" in (rt.source.health.streams["metrics_log"] or "")
        assert problem("publication") == 1
        await wait_leases(admin)
        total = 0
        for round_ in range(2):
            total += await insert_events(admin, rt.users, 3)
            await wait_effects(admin, total, f"telemetry hints, round {round_}")

        await admin.execute("alter publication supabase_realtime add table public.metrics_log")
        await rt.connected("metrics_log back")
        assert problem("publication") == 0
    error = events(rt.logs, "source.stream_error")[0]
    assert error["stream"] == "metrics_log" and error["table"] == "public.metrics_log"
    assert "table: metrics_log" in error["message"]  # the server's whole message, table included
    missing = events(rt.logs, "source.publication_missing")
    assert [e["table"] for e in missing] == ["public.metrics_log"]
    assert [e["stream"] for e in events(rt.logs, "source.publication_restored")] == ["metrics_log"]
    reconnects = events(rt.logs, "source.reconnecting")
    assert {e["stream"] for e in reconnects} == {"metrics_log"}  # telemetry's session never ended
    refused = [e for e in reconnects if "publication check" not in e["reason"]]
    assert refused and all(e["reason"].startswith("public.metrics_log: Unable to subscribe") for e in refused)
    assert all(e["backoff"] == "slow" for e in refused)


async def test_a_stream_dropped_from_the_publication_while_running_is_noticed(
    database: TestDatabase, admin: asyncpg.Connection, server: RealtimeTestServer
) -> None:
    """The server sends nothing and no error once a table leaves the publication: the periodic check
    notices, and after it is back the rows written meanwhile are caught up (exactly once)."""
    async with realtime_service(database, admin, server) as rt:
        await admin.execute("alter publication supabase_realtime drop table public.telemetry_events")
        await wait_until(
            check(lambda: not rt.source.health.connected), timeout=WAIT, what="publication check"
        )
        assert "not in publication" in (rt.source.health.streams["telemetry_events"] or "")
        assert rt.source.health.streams["metrics_log"] is None
        assert problem("publication") == 1
        sent, unsent = server.stats["changes_sent"], server.stats["rows_not_sent"]
        total = await insert_events(admin, rt.users, 3)
        await wait_until(
            check(lambda: server.stats["rows_not_sent"] >= unsent + total), timeout=WAIT, what="skipped"
        )

        await admin.execute("alter publication supabase_realtime add table public.telemetry_events")
        await wait_effects(admin, total, "rows written while out of the publication")
        await rt.connected("back")
        assert server.stats["changes_sent"] == sent  # never sent: only the catch-up read them
    (missing,) = events(rt.logs, "source.publication_missing")
    assert missing["table"] == "public.telemetry_events" and missing["log_level"] == "error"
    assert [e["stream"] for e in events(rt.logs, "source.publication_restored")] == ["telemetry_events"]


async def test_subscribed_again_on_a_live_channel_catches_up(
    database: TestDatabase, admin: asyncpg.Connection, server: RealtimeTestServer
) -> None:
    """The server lost Postgres for a while (changes in between are never sent), then says
    "Subscribed to PostgreSQL" again on the live channel: the missed rows are caught up."""
    async with realtime_service(database, admin, server) as rt:
        server.pause()
        total = await insert_events(admin, rt.users, 3)
        await server.resubscribe_all()
        await wait_effects(admin, total, "rows missed while the server was not subscribed")
        assert rt.source.health.connected
    assert server.stats["changes_sent"] == 0
    assert {e["stream"] for e in events(rt.logs, "source.resubscribed")} == {
        "telemetry_events",
        "metrics_log",
    }
    assert events(rt.logs, "source.reconnecting") == []
    assert server.stats["connections"] == 2


async def test_a_server_restart_closes_with_1012_and_subscribes_late(
    database: TestDatabase, admin: asyncpg.Connection, server: RealtimeTestServer
) -> None:
    async with realtime_service(database, admin, server) as rt:
        await server.restart()
        await wait_until(
            check(lambda: len(events(rt.logs, "source.reconnecting")) >= 2), timeout=WAIT, what="restart"
        )
        await rt.connected("ready again")
        total = await insert_events(admin, rt.users, 3)
        await wait_effects(admin, total, "effects after the restart")
    reconnects = events(rt.logs, "source.reconnecting")
    for stream in ("telemetry_events", "metrics_log"):
        first = next(e for e in reconnects if e["stream"] == stream)
        assert "restarting (websocket closed with 1012)" in first["reason"], reconnects
        assert first["backoff"] == "fast"


async def test_unknown_tables_and_malformed_frames_are_ignored(
    database: TestDatabase,
    admin: asyncpg.Connection,
    server: RealtimeTestServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with realtime_service(database, admin, server) as rt:
        for frame in JUNK_FRAMES:
            await server.send_raw(frame)
        await server.send_unknown_table()
        await wait_until(
            check(lambda: any(e["event"] == "source.unknown_message" for e in rt.logs)),
            timeout=WAIT,
            what="unknown table warning",
        )
        before = wakeups()
        total = await insert_events(admin, rt.users, 3)
        await wait_effects(admin, total, "effects after the junk")
        await wait_until(check(partial(lambda n: wakeups() > n, before)), timeout=WAIT, what="wake-up")
        assert rt.source.health.connected
        assert server.stats["connections"] == 2  # the same sessions survived
    unknown = events(rt.logs, "source.unknown_message")
    assert unknown[0]["log_level"] == "warning" and unknown[0]["table"] == "not_a_stream"
    malformed = events(rt.logs, "source.malformed_message")
    # Each frame reached both websockets (one per stream).
    assert len(malformed) == 2 * len(JUNK_FRAMES) and malformed[0]["log_level"] == "warning"
    assert {e["stream"] for e in malformed} == {"telemetry_events", "metrics_log"}
    # The client would log each frame verbatim (frames carry row data): none of it reaches a log.
    assert not any("not json" in r.getMessage() for r in caplog.records)
    assert "not json" not in repr(rt.logs)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"SUPABASE_URL": "https://abc.supabase.co"}, "SUPABASE_SERVICE_ROLE_KEY is required"),
        (
            {"SUPABASE_URL": "https://abc.supabase.co", "SUPABASE_SERVICE_ROLE_KEY": ""},
            "SUPABASE_SERVICE_ROLE_KEY is required",
        ),
        ({"SUPABASE_SERVICE_ROLE_KEY": KEY}, "SUPABASE_URL is required"),
        ({"SUPABASE_URL": "ftp://files.example.com", "SUPABASE_SERVICE_ROLE_KEY": KEY}, "SUPABASE_URL:"),
    ],
)
def test_config_errors_exit_2_with_one_line(env: dict[str, str], expected: str) -> None:
    unused = {"DATABASE_URL": "postgresql://floyo@127.0.0.1:9/unused", "FLOYO_WAKEUP": "realtime"}
    done = run_cli("run", env=fresh_env(unused, env))
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], lines
    assert KEY not in done.stderr + done.stdout
    assert done.stdout == ""


async def test_cli_with_realtime_recovers_from_refused_key_and_never_logs_it(
    database: TestDatabase, admin: asyncpg.Connection, server: RealtimeTestServer
) -> None:
    await admin.execute(EFFECTS_DDL)
    users = await make_users(admin, 3)
    server.keys = {}
    proc = ServiceProcess(
        database.service_url,
        env={
            "FLOYO_CONSUMERS": "tests.support.consumers:recorders",
            "FLOYO_WAKEUP": "realtime",
            "SUPABASE_URL": server.url,
            "SUPABASE_SERVICE_ROLE_KEY": KEY,
            "FLOYO_POLL_INTERVAL_SECONDS": "60",
        },
    ).start()
    try:
        await proc.wait_for_event("source.auth_refused", timeout=WAIT)
        server.keys[KEY] = {"role": "service_role"}
        await proc.wait_for_event("source.connected", timeout=WAIT)
        await wait_leases(admin)
        total = await insert_events(admin, users, 3)
        await wait_effects(admin, total, "effects through the CLI")
    finally:
        code = await proc.stop()
    assert code == 0
    logged: list[dict[str, Any]] = proc.events()
    refused = next(e for e in logged if e["event"] == "source.auth_refused")
    assert refused["status"] == 403 and refused["body"] == ""
    assert KEY not in "\n".join(proc.stdout + proc.stderr)
