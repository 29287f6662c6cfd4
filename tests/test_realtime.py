"""Realtime wake-ups: the real `realtime` client against the Phoenix-channel test double in
tests/realtime_server.py, fed by a real Postgres LISTEN (never a live Supabase project).

The poll safety net runs every 60 s here and every wait is shorter, so prompt processing can only
come from a Realtime hint or the catch-up pass after a (re)subscribe.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from structlog.testing import capture_logs

from floyo_pipeline import metrics
from floyo_pipeline.engine.realtime import RealtimeSource
from tests.pg import TestDatabase
from tests.realtime_server import RealtimeTestServer
from tests.service import ROOT, ServiceProcess, insert_events, make_users, running_service, wait_until
from tests.support_consumers import EFFECTS_DDL, EffectRecorder

KEY = "test-service-role-key-5f2c9a"
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
    srv = await RealtimeTestServer(database.admin_url).start()
    try:
        yield srv
    finally:
        await srv.stop()


def fast_source(server: RealtimeTestServer, key: str = KEY) -> RealtimeSource:
    return RealtimeSource(server.url, key, check_interval=0.2, backoff_base=0.05, backoff_cap=0.5)


def wakeups() -> float:
    return metrics.REGISTRY.get_sample_value("floyo_pipeline_wakeups_total", {"source": "realtime"}) or 0.0


def gauge() -> float | None:
    return metrics.REGISTRY.get_sample_value("floyo_pipeline_source_connected", {"source": "realtime"})


def check(predicate: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def run() -> bool:
        return predicate()

    return run


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
    """Every partition worker has started (so later rows need a wake-up to be seen)."""

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


async def test_inserted_rows_wake_the_service_through_realtime(
    database: TestDatabase, admin: asyncpg.Connection, server: RealtimeTestServer
) -> None:
    await admin.execute(EFFECTS_DDL)
    users = await make_users(admin, 4)
    source = fast_source(server)
    async with running_service(
        database.service_url, [EffectRecorder()], sources=[source], poll_interval_seconds=POLL_SECONDS
    ):
        await wait_until(check(lambda: source.health.connected), timeout=WAIT, what="realtime ready")
        assert gauge() == 1
        await wait_leases(admin)
        total = 0
        for round_ in range(2):  # the second round starts with every worker idle
            before, sent = wakeups(), server.stats["changes_sent"]
            total += await insert_events(admin, users, 5)
            await wait_effects(admin, total, f"effects of round {round_}")
            assert server.stats["changes_sent"] > sent
            assert wakeups() > before
        assert server.stats["heartbeats"] >= 1
    assert source.health.reason == "stopped"


async def test_rows_inserted_before_subscribed_to_postgresql_are_caught_up(
    database: TestDatabase, admin: asyncpg.Connection, server: RealtimeTestServer
) -> None:
    await admin.execute(EFFECTS_DDL)
    users = await make_users(admin, 4)
    source = fast_source(server)
    server.subscribed_gate.clear()  # SUBSCRIBED replies go out; "Subscribed to PostgreSQL" waits
    async with running_service(
        database.service_url, [EffectRecorder()], sources=[source], poll_interval_seconds=POLL_SECONDS
    ):
        await wait_until(check(lambda: server.awaiting_subscribed == 2), timeout=WAIT, what="joins")
        await wait_leases(admin)
        assert not source.health.connected
        assert "Subscribed to PostgreSQL" in (source.health.reason or "")
        total = await insert_events(admin, users, 3)
        server.subscribed_gate.set()
        await wait_until(check(lambda: source.health.connected), timeout=WAIT, what="realtime ready")
        await wait_effects(admin, total, "rows of the first gap")

        # The same gap after a reconnect: the server never delivers these rows, the catch-up does.
        server.subscribed_gate.clear()
        server.drop_all()
        await wait_until(check(lambda: not source.health.connected), timeout=WAIT, what="drop noticed")
        await wait_until(check(lambda: server.awaiting_subscribed == 2), timeout=WAIT, what="rejoins")
        assert not source.health.connected
        total += await insert_events(admin, users, 3)
        server.subscribed_gate.set()
        await wait_effects(admin, total, "rows of the second gap")
        assert source.health.connected
    assert server.stats["changes_sent"] == 0


async def test_recovers_from_drop_and_refused_reconnects_exactly_once(
    database: TestDatabase, admin: asyncpg.Connection, server: RealtimeTestServer
) -> None:
    await admin.execute(EFFECTS_DDL)
    users = await make_users(admin, 5)
    source = fast_source(server)
    async with running_service(
        database.service_url, [EffectRecorder()], sources=[source], poll_interval_seconds=POLL_SECONDS
    ) as task:
        await wait_until(check(lambda: source.health.connected), timeout=WAIT, what="realtime ready")
        await wait_leases(admin)
        total = await insert_events(admin, users, 4)
        await wait_effects(admin, total, "effects before the outage")

        server.refusing = True
        server.drop_all()
        await wait_until(check(lambda: not source.health.connected), timeout=WAIT, what="drop noticed")
        total += await insert_events(admin, users, 4)
        # More attempts than the client's own reconnect loop would ever make (it gives up after 5).
        await wait_until(
            check(lambda: server.stats["upgrades_refused"] >= 7), timeout=WAIT, what="refused retries"
        )
        assert not source.health.connected
        assert "503" in (source.health.reason or "")
        assert gauge() == 0
        total += await insert_events(admin, users, 4)

        server.refusing = False
        await wait_until(check(lambda: source.health.connected), timeout=WAIT, what="recovery")
        await wait_effects(admin, total, "effects of rows inserted during the outage")
        assert gauge() == 1
        total += await insert_events(admin, users, 2)
        await wait_effects(admin, total, "effects after recovery")
        assert not task.done()


async def test_refused_join_is_reported_and_retried_until_accepted(
    database: TestDatabase, admin: asyncpg.Connection, server: RealtimeTestServer
) -> None:
    await admin.execute(EFFECTS_DDL)
    users = await make_users(admin, 3)
    server.accepted_tokens = {"some-other-key"}
    source = fast_source(server)
    with capture_logs() as logs:
        async with running_service(
            database.service_url, [EffectRecorder()], sources=[source], poll_interval_seconds=POLL_SECONDS
        ) as task:
            await wait_until(
                check(lambda: server.stats["joins_refused"] >= 3), timeout=WAIT, what="refused joins"
            )
            assert not source.health.connected
            assert "Invalid JWT" in (source.health.reason or "")
            assert not task.done()

            server.accepted_tokens.add(KEY)
            await wait_until(check(lambda: source.health.connected), timeout=WAIT, what="accepted")
            await wait_leases(admin)
            total = await insert_events(admin, users, 3)
            await wait_effects(admin, total, "effects after the token was accepted")
    refused = [e for e in logs if e["event"] == "source.join_refused"]
    assert refused and all("Invalid JWT" in e["reason"] for e in refused)
    assert KEY not in repr(logs)


async def test_unknown_tables_and_malformed_frames_are_ignored(
    database: TestDatabase,
    admin: asyncpg.Connection,
    server: RealtimeTestServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await admin.execute(EFFECTS_DDL)
    users = await make_users(admin, 3)
    source = fast_source(server)
    with capture_logs() as logs:
        async with running_service(
            database.service_url, [EffectRecorder()], sources=[source], poll_interval_seconds=POLL_SECONDS
        ):
            await wait_until(check(lambda: source.health.connected), timeout=WAIT, what="realtime ready")
            await wait_leases(admin)
            for frame in JUNK_FRAMES:
                await server.send_raw(frame)
            await server.send_unknown_table()
            await wait_until(
                check(lambda: any(e["event"] == "source.unknown_message" for e in logs)),
                timeout=WAIT,
                what="unknown table warning",
            )
            before = wakeups()
            total = await insert_events(admin, users, 3)
            await wait_effects(admin, total, "effects after the junk")
            assert wakeups() > before
            assert source.health.connected
            assert server.stats["connections"] == 1  # the same session survived
    unknown = [e for e in logs if e["event"] == "source.unknown_message"]
    assert unknown[0]["log_level"] == "warning" and unknown[0]["table"] == "not_a_stream"
    malformed = [e for e in logs if e["event"] == "source.malformed_message"]
    assert len(malformed) == len(JUNK_FRAMES) and malformed[0]["log_level"] == "warning"
    # The client would log each frame verbatim (frames carry row data): none of it reaches a log.
    assert not any("not json" in r.getMessage() for r in caplog.records)
    assert "not json" not in repr(logs)


def _run_cli(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("SUPABASE_", "FLOYO_"))}
    full.update(
        {
            "DATABASE_URL": "postgresql://floyo@127.0.0.1:9/unused",
            "PYTHONPATH": str(ROOT),
            "FLOYO_WAKEUP": "realtime",
            **env,
        }
    )
    return subprocess.run(
        [sys.executable, "-m", "floyo_pipeline", "run"],
        env=full,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


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
    done = _run_cli(env)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], lines
    assert KEY not in done.stderr + done.stdout
    assert done.stdout == ""


async def test_cli_with_realtime_recovers_from_refused_token_and_never_logs_the_key(
    database: TestDatabase, admin: asyncpg.Connection, server: RealtimeTestServer
) -> None:
    await admin.execute(EFFECTS_DDL)
    users = await make_users(admin, 3)
    server.accepted_tokens = set()
    proc = ServiceProcess(
        database.service_url,
        env={
            "FLOYO_CONSUMERS": "tests.support_consumers:recorders",
            "FLOYO_WAKEUP": "realtime",
            "SUPABASE_URL": server.url,
            "SUPABASE_SERVICE_ROLE_KEY": KEY,
            "FLOYO_POLL_INTERVAL_SECONDS": "60",
        },
    ).start()
    try:
        await proc.wait_for_event("source.join_refused", timeout=WAIT)
        server.accepted_tokens.add(KEY)
        await proc.wait_for_event("source.connected", timeout=WAIT)
        await wait_leases(admin)
        total = await insert_events(admin, users, 3)
        await wait_effects(admin, total, "effects through the CLI")
    finally:
        code = await proc.stop()
    assert code == 0
    events: list[dict[str, Any]] = proc.events()
    refused = next(e for e in events if e["event"] == "source.join_refused")
    assert "Invalid JWT" in refused["reason"]
    assert KEY not in "\n".join(proc.stdout + proc.stderr)
