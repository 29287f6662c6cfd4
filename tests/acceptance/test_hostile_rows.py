"""G10 through the real CLI: rows an app user (or a server with the service role key) can store cannot
stop, skip or stall the processing of anybody else's rows; the pipeline's own columns are the
database's. Each attack here broke the service before it was closed."""

from __future__ import annotations

import asyncio
import time
import urllib.request
import uuid
from datetime import timedelta

import asyncpg
import pytest

from tests.support.analyzers import T0, consenting_users
from tests.support.clients import as_service_role, as_user, caught_up, lag_by_consumer
from tests.support.ops import sample
from tests.support.pg import TestDatabase
from tests.support.service import ServiceProcess, wait_until

CONSUMERS = ("app_workflows", "file_patterns", "performance")


# What the Supabase API (PostgREST) runs for `supabase.from('telemetry_events').insert(body).select()`:
# it inserts the columns the body names.
POSTGREST_INSERT = """
insert into public.telemetry_events (user_id, occurred_at, app_id, event_type)
select b.user_id, b.occurred_at, b.app_id, b.event_type
from (select $1::json as json_data) p,
     lateral (select case when json_typeof(p.json_data) = 'array' then p.json_data
                          else json_build_array(p.json_data) end as val) u,
     lateral (select * from json_to_recordset(u.val)
              as _(user_id uuid, occurred_at timestamptz, app_id text, event_type text)) b
returning public.telemetry_events.*
"""

DEEP = "[" * 3000 + "]" * 3000
HUGE_INT = "1" * 5000

# (occurred_at as SQL text, metadata as JSON text, what the dead letter must name)
HOSTILE_TELEMETRY: list[tuple[str, str, str]] = [
    ("2026-01-05", '{"nested": ' + DEEP + "}", "metadata"),
    ("2026-01-05", '{"n": ' + HUGE_INT + "}", "metadata"),
    ("2026-01-05", '{"x": 1e999}', "metadata"),
    ("20000-01-01", "{}", "occurred_at"),
    ("4000-01-01 BC", "{}", "occurred_at"),
    ("infinity", "{}", "occurred_at"),
    ("-infinity", "{}", "occurred_at"),
]
HOSTILE_METRICS: list[tuple[str, str, str]] = [
    ("2026-01-05", '{"lcp": ' + DEEP + "}", "metric"),
    ("2026-01-05", '{"lcp": ' + HUGE_INT + "}", "metric"),
    ("20000-01-01", '{"lcp": 2.5}', "ts"),
    ("infinity", '{"lcp": 2.5}', "ts"),
]


async def insert_as_user(conn: asyncpg.Connection, user: uuid.UUID, at: str, app: str, metadata: str) -> int:
    async with as_user(conn, user) as c:
        row_id: int = await c.fetchval(
            """insert into public.telemetry_events (user_id, occurred_at, app_id, event_type, metadata)
               values ($1, $2::text::timestamptz, $3, 'app_focused', $4::text::jsonb) returning id""",
            user,
            at,
            app,
            metadata,
        )
    return row_id


async def canary_rows(conn: asyncpg.Connection, users: list[uuid.UUID], per_user: int) -> None:
    """Ordinary rows of other users, switching apps, in every partition they happen to fall in."""
    for user in users:
        async with as_user(conn, user) as c:
            await c.execute(
                """insert into public.telemetry_events (user_id, occurred_at, app_id, event_type)
                   select $1, $2::timestamptz + make_interval(secs => g * 10),
                          (array['vscode', 'slack'])[g % 2 + 1], 'app_focused'
                   from generate_series(1, $3) g""",
                user,
                T0,
                per_user,
            )


def start(db: TestDatabase, **env: str) -> ServiceProcess:
    return ServiceProcess(db.service_url, env={"FLOYO_BATCH_SIZE": "50", **env}).start()


async def dead_letter_reasons(conn: asyncpg.Connection, stream: str) -> dict[int, set[tuple[str, str]]]:
    found: dict[int, set[tuple[str, str]]] = {}
    for r in await conn.fetch(
        "select row_id, consumer, error_class, error_message from floyo_pipeline.dead_letters"
        " where stream = $1",
        stream,
    ):
        found.setdefault(r["row_id"], set()).add((r["consumer"], f"{r['error_class']}: {r['error_message']}"))
    return found


async def test_rows_that_cannot_be_decoded_are_dead_lettered_and_everyone_else_is_processed(
    database: TestDatabase, admin: asyncpg.Connection
) -> None:
    attacker, *others = await consenting_users(admin, 33, ("vscode", "slack"))
    proc = start(database)
    try:
        await proc.wait_for_event("lease.acquired")
        hostile: dict[int, str] = {}
        for at, metadata, field in HOSTILE_TELEMETRY:
            hostile[await insert_as_user(admin, attacker, at, "vscode", metadata)] = field
        await canary_rows(admin, others, 6)
        metric_rows: dict[int, str] = {}
        for at, metric, field in HOSTILE_METRICS:
            async with as_service_role(admin) as c:
                await c.execute(
                    "insert into public.metrics_log (ts, source, metric)"
                    " values ($1::text::timestamptz, 'vercel', $2::text::jsonb)",
                    at,
                    metric,
                )
            metric_rows[await admin.fetchval("select max(id) from public.metrics_log")] = field
        async with as_service_role(admin) as c:
            await c.execute(
                "insert into public.metrics_log (ts, source, metric)"
                " values ($1, 'supabase', '{\"latencyMs\": 450}')",
                T0,
            )
        ordinary_metric = await admin.fetchval("select max(id) from public.metrics_log")
        await wait_until(lambda: caught_up(admin), timeout=60, what="every consumer caught up")
        assert proc.proc is not None and proc.proc.poll() is None, proc.stderr[-5:]
    finally:
        assert await proc.stop() == 0

    telemetry_dead = await dead_letter_reasons(admin, "telemetry_events")
    assert set(telemetry_dead) == set(hostile)
    for row_id, field in hostile.items():
        assert {c for c, _ in telemetry_dead[row_id]} == set(CONSUMERS)
        assert all(text.split(": ", 2)[1] == field for _, text in telemetry_dead[row_id]), telemetry_dead[
            row_id
        ]
    metrics_dead = await dead_letter_reasons(admin, "metrics_log")
    assert set(metrics_dead) == set(metric_rows)
    for row_id, field in metric_rows.items():
        assert {(c, text.split(": ", 2)[1]) for c, text in metrics_dead[row_id]} == {("performance", field)}
    # Every other user's rows were analyzed: 6 rows alternating apps make 5 transitions each.
    weights = dict(
        await admin.fetch(
            "select user_id, sum(weight) from public.relationships where relation_type = 'app_transition'"
            " group by user_id"
        )
    )
    assert weights == {u: 5 for u in others}
    assert ordinary_metric not in metrics_dead
    # Nothing was logged of the payloads.
    assert not any(HUGE_INT[:50] in line or "[[[[" in line for line in proc.stdout + proc.stderr)


async def test_clients_cannot_write_the_pipelines_columns(
    database: TestDatabase, admin: asyncpg.Connection
) -> None:
    (user,) = await consenting_users(admin, 1, ("vscode",))
    forged: list[tuple[str, str]] = [
        ("pipeline_txid", "'9000000000000000000'"),
        ("pipeline_txid", "'1'"),
        ("created_at", "'2001-01-01'"),
    ]
    for column, value in forged:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            async with as_user(admin, user) as c:
                await c.execute(
                    "insert into public.telemetry_events"
                    f" (user_id, occurred_at, app_id, event_type, {column})"
                    f" values ($1, now(), 'vscode', 'app_focused', {value})",
                    user,
                )
    ahead = int(await admin.fetchval("select coalesce(max(id), 0) + 1000 from public.telemetry_events"))
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        async with as_user(admin, user) as c:
            await c.execute(
                "insert into public.telemetry_events (id, user_id, occurred_at, app_id, event_type)"
                " overriding system value values ($1, $2, now(), 'vscode', 'app_focused')",
                ahead,
                user,
            )
    for sql in (
        "update public.telemetry_events set pipeline_txid = '1'",
        "update public.telemetry_events set app_id = 'x'",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            async with as_user(admin, user) as c:
                await c.execute(sql)
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        async with as_service_role(admin) as c:
            await c.execute(
                "insert into public.metrics_log (ts, source, metric, pipeline_txid)"
                " values (now(), 'ci', '{}', '1')"
            )
    # The path Floyo's app uses keeps working, and the database fills the pipeline's columns.
    body = [
        {
            "user_id": str(user),
            "occurred_at": "2026-01-05T09:00:00Z",
            "app_id": "vscode",
            "event_type": "app_focused",
        }
    ]
    async with as_user(admin, user) as c:
        inserted = await c.fetch(POSTGREST_INSERT, body)  # the connection's codec encodes the JSON
    assert len(inserted) == 1 and inserted[0]["pipeline_txid"] > 1
    # Another user's insert right after is not disturbed by anything the first one tried.
    (other,) = await consenting_users(admin, 1, ("vscode",))
    async with as_user(admin, other) as c:
        await c.execute(
            "insert into public.telemetry_events (user_id, occurred_at, app_id, event_type)"
            " values ($1, now(), 'a', 'b')",
            other,
        )


async def test_a_row_with_a_future_transaction_id_skips_nobody_and_shows_as_lag(
    database: TestDatabase, admin: asyncpg.Connection
) -> None:
    """Only the table's owner can still store such a row (clients cannot, above); even then the readers
    never let it move their cursors, and the lag it leaves is visible."""
    users = await consenting_users(admin, 64, ("vscode", "slack"))
    forged_user = users[0]
    await admin.execute(
        "insert into public.telemetry_events (user_id, occurred_at, app_id, event_type, pipeline_txid)"
        " values ($1, now(), 'vscode', 'app_focused', '9000000000000000000')",
        forged_user,
    )
    proc = start(database)
    try:
        await proc.wait_for_event("lease.acquired")
        await canary_rows(admin, users, 4)

        async def others_done() -> bool:
            return int(await admin.fetchval("select count(*) from floyo_pipeline.app_workflow_state")) == 64

        await wait_until(others_done, timeout=60, what="every user's rows analyzed")
        await canary_rows(admin, users[1:], 2)

        async def all_but_one() -> bool:
            lag = await lag_by_consumer(admin)
            return lag.get(("app_workflows", "telemetry_events")) == 1

        await wait_until(all_but_one, timeout=60, what="lag down to the forged row")
    finally:
        assert await proc.stop() == 0
    counts = dict(
        await admin.fetch(
            "select user_id, sum(weight) from public.relationships where relation_type = 'app_transition'"
            " group by user_id"
        )
    )
    assert counts == {u: (3 if u == forged_user else 5) for u in users}


async def test_an_oversized_path_is_dead_lettered_and_the_next_row_is_not(
    database: TestDatabase, admin: asyncpg.Connection
) -> None:
    (user,) = await consenting_users(admin, 1, ("vscode",))
    long_path = "/home/u/" + "d" * 10_000 + ".py"
    async with as_user(admin, user) as c:
        oversized = await c.fetchval(
            "insert into public.telemetry_events (user_id, occurred_at, app_id, event_type, file_path)"
            " values ($1, $2, 'vscode', 'file_opened', $3) returning id",
            user,
            T0,
            long_path,
        )
        innocent = await c.fetchval(
            "insert into public.telemetry_events (user_id, occurred_at, app_id, event_type, file_path)"
            " values ($1, $2, 'vscode', 'file_opened', '/home/u/notes.md') returning id",
            user,
            T0 + timedelta(seconds=5),
        )
    proc = start(database)
    try:
        await wait_until(lambda: caught_up(admin), timeout=60, what="every consumer caught up")
    finally:
        assert await proc.stop() == 0
    dead = await dead_letter_reasons(admin, "telemetry_events")
    assert set(dead) == {oversized}
    ((consumer, reason),) = dead[oversized]
    assert consumer == "file_patterns"
    assert reason == "RowRejected: file_path: 10011 bytes, over the 1024-byte limit of stored values"
    patterns = await admin.fetch("select file_extension, count from public.patterns where user_id = $1", user)
    assert [(p["file_extension"], p["count"]) for p in patterns] == [("md", 1)]
    assert innocent not in dead


FLOOD_SECONDS = 3.0


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return str(response.read().decode())


async def test_forged_notifications_cost_a_few_reads_and_rows_still_flow(
    database: TestDatabase, admin: asyncpg.Connection
) -> None:
    """Any role may call pg_notify: a user sending the pipeline's wake-up on a loop makes it read a few
    times a second, not thousands of times, and real rows still get through."""
    (user,) = await consenting_users(admin, 1, ("vscode", "slack"))
    proc = start(database, FLOYO_POLL_INTERVAL_SECONDS="5")
    try:
        await proc.wait_for_event("source.connected")
        port = next(e["port"] for e in proc.events() if e["event"] == "http.listening")
        attacker = await asyncpg.connect(database.admin_url)
        try:
            await attacker.execute("set role authenticated")
            text = await asyncio.to_thread(scrape, port)
            before = sample(text, "floyo_pipeline_reads_total", found="none") or 0
            started, sent = time.monotonic(), 0
            while time.monotonic() - started < FLOOD_SECONDS:
                await attacker.execute("select pg_notify('floyo_pipeline', 'telemetry_events')")
                sent += 1
        finally:
            await attacker.close()
        await asyncio.sleep(1.5)  # the http port's snapshot and any paced wake-up
        after = sample(await asyncio.to_thread(scrape, port), "floyo_pipeline_reads_total", found="none") or 0
        await canary_rows(admin, [user], 2)

        async def analyzed() -> bool:
            return bool(await admin.fetchval("select count(*) from floyo_pipeline.app_workflow_state"))

        await wait_until(analyzed, timeout=10, what="a real row processed after the flood")
    finally:
        assert await proc.stop() == 0
    empty_reads = after - before
    print(f"{sent} forged notifications in {FLOOD_SECONDS}s: {empty_reads:.0f} empty reads")
    # Unpaced, the readers loop on empty reads for as long as the flood lasts (about 1,700 here).
    assert sent > 1000
    assert empty_reads < 250
