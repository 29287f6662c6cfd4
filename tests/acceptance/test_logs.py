"""Logs: JSON lines with stable event names through a start → batch → stop cycle, and no secrets."""

from __future__ import annotations

import asyncio
import io
import json
import signal
import uuid
from datetime import datetime
from pathlib import Path

import asyncpg
import pytest
import structlog

from floyo_pipeline.logs import configure_logging, get_logger, scrub, secret_values
from tests.support.consumers import EFFECTS_DDL, wait_for_effects
from tests.support.ops import http
from tests.support.pg import SERVICE_USER, TestDatabase, with_database
from tests.support.service import ServiceProcess, fresh_env, insert_events, make_users, run_cli, wait_until

PASSWORD = "Planted-Db-Pass-7f3a"
SUPABASE_KEY = "planted.service-role.key-91c2e4"
PAYLOAD = "PLANTED-PAYLOAD-5d8e1b"


def with_password(url: str) -> str:
    assert f"{SERVICE_USER}@" in url
    return url.replace(f"{SERVICE_USER}@", f"{SERVICE_USER}:{PASSWORD}@", 1)


async def test_cli_logs_a_cycle_as_json_without_secrets_or_payloads(
    database: TestDatabase, admin: asyncpg.Connection
) -> None:
    await admin.execute(EFFECTS_DDL)
    users = await make_users(admin, 3)
    await admin.execute(
        """insert into public.telemetry_events (user_id, occurred_at, app_id, event_type, file_path, metadata)
           select u, timestamptz '2026-01-01' + make_interval(secs => g), app, 'file_opened',
                  '/home/someone/' || $2 || '.py', jsonb_build_object('note', $2)
           from unnest($1::uuid[]) u, generate_series(1, 4) g,
                unnest(array['vscode', 'poison']) app""",
        users,
        PAYLOAD,
    )
    proc = ServiceProcess(
        with_password(database.service_url),
        env={
            "FLOYO_CONSUMERS": "tests.support.ops:leaky_recorders",
            "FLOYO_HTTP_HOST": "127.0.0.1",
            "SUPABASE_URL": "https://planted.supabase.co",
            "SUPABASE_SERVICE_ROLE_KEY": SUPABASE_KEY,
        },
    ).start()
    await proc.wait_for_event("http.listening")
    port = next(e["port"] for e in proc.events() if e["event"] == "http.listening")

    async def all_handled() -> bool:
        effects = await admin.fetchval("select count(*) from public.test_effects")
        dead = await admin.fetchval("select count(*) from floyo_pipeline.dead_letters")
        return int(effects) == 12 and int(dead) == 12

    await wait_until(all_handled, what="12 effects and 12 dead letters")
    await proc.wait_for_event("row.dead_lettered")
    served = [await http(f"http://127.0.0.1:{port}{path}") for path in ("/status", "/readyz", "/metrics")]
    assert [r.status for r in served] == [200, 200, 200]
    proc.signal(signal.SIGTERM)
    assert await asyncio.to_thread(proc.wait, 30) == 0
    await asyncio.sleep(0.2)  # the reader threads drain the pipes

    events = proc.events()  # every stdout line is JSON, or this raises
    assert len(events) == len([line for line in proc.stdout if line.strip()])
    for e in events:
        assert {"timestamp", "level", "event"} <= set(e), e
        stamp = datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00"))
        assert stamp.utcoffset() is not None and stamp.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
        assert e["level"] in {"debug", "info", "warning", "error", "critical"}
    names = [e["event"] for e in events]
    assert names[0] == "service.started" and names[-1] == "service.stopped"
    for expected in (
        "http.listening",
        "source.connected",
        "lease.acquired",
        "batch.committed",
        "row.dead_lettered",
        "service.stopping",
        "lease.released",
    ):
        assert expected in names, expected
    assert names.index("service.stopping") < names.index("lease.released") < names.index("service.stopped")
    batch = next(e for e in events if e["event"] == "batch.committed")
    assert {"consumer", "stream", "batch_size", "duration"} <= set(batch)
    assert {"partition", "partitions"} & set(batch)  # one partition, or how many the batch covered
    dead = next(e for e in events if e["event"] == "row.dead_lettered")
    assert {"consumer", "stream", "partition", "row_id", "error_class"} <= set(dead)

    # The payload did reach the database (the dead letter keeps the error text for operators).
    assert await admin.fetchval(
        "select count(*) from floyo_pipeline.dead_letters where error_message like '%' || $1 || '%'", PAYLOAD
    )
    everything = "\n".join([*proc.stdout, *proc.stderr, *(r.body.decode() for r in served)])
    for planted in (PASSWORD, SUPABASE_KEY, PAYLOAD):
        assert planted not in everything, planted


async def test_console_format_for_a_terminal(database: TestDatabase) -> None:
    proc = ServiceProcess(
        database.service_url,
        env={"FLOYO_CONSUMERS": "tests.support.consumers:recorders", "FLOYO_LOG_FORMAT": "console"},
    ).start()

    async def started() -> bool:
        assert proc.proc is not None and proc.proc.poll() is None, proc.stderr
        # http.listening comes after the signal handlers are installed (service.started comes before).
        return any("http.listening" in line for line in list(proc.stdout))

    await wait_until(started, what="http.listening on the console")
    assert await proc.stop() == 0
    await asyncio.sleep(0.2)
    lines = [line for line in proc.stdout if line.strip()]
    assert any("service.stopped" in line for line in lines)
    for line in lines:
        with pytest.raises(json.JSONDecodeError):
            json.loads(line)
    first = next(line for line in lines if "service.started" in line)
    assert "info" in first and "replica_id=" in first


def test_secrets_are_scrubbed_from_fields_messages_and_tracebacks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = f"postgresql://svc:{PASSWORD}@db.example.com:5432/postgres"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("SUPABASE_SERVICE_ROLE_KEY", SUPABASE_KEY)
    assert secret_values() == {PASSWORD, SUPABASE_KEY}
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    try:
        configure_logging("json", "info")
        log = get_logger("test")
        log.info("db.connecting", dsn=url, headers={"apikey": SUPABASE_KEY})
        try:
            raise ConnectionError(f"could not connect to {url}")
        except ConnectionError:
            log.exception("task.crashed", task="x")
    finally:
        structlog.reset_defaults()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    docs = [json.loads(line) for line in lines]
    assert docs[0]["event"] == "db.connecting" and "**********" in docs[0]["dsn"]
    assert docs[1]["event"] == "task.crashed" and "exception" in docs[1]
    assert PASSWORD not in out.getvalue() and SUPABASE_KEY not in out.getvalue()
    assert scrub(f"key={SUPABASE_KEY}") == "key=**********"


async def test_a_database_outage_is_logged_in_json_lines_only(
    database: TestDatabase, admin: asyncpg.Connection
) -> None:
    """asyncpg's pool, the wake-up source and the engine all complain while the role cannot log in:
    every line they print is JSON, and the service catches up once the database lets it back in."""
    await admin.execute(EFFECTS_DDL)
    role = f"floyo_t_outage_{uuid.uuid4().hex[:8]}"
    await admin.execute(f"create role {role} login in role floyo_pipeline_worker")
    proc = ServiceProcess(
        with_database(database.admin_url, database.name, role),
        env={"FLOYO_CONSUMERS": "tests.support.consumers:recorders", "FLOYO_CONNECT_TIMEOUT_SECONDS": "2"},
    )
    try:
        users = await make_users(admin, 2)
        total = await insert_events(admin, users, 3)
        proc.start()
        await wait_for_effects(admin, total)
        await admin.execute(f"alter role {role} nologin")
        await admin.execute("select pg_terminate_backend(pid) from pg_stat_activity where usename = $1", role)

        async def pool_complained() -> bool:
            return any('"logger": "asyncpg.pool"' in line for line in list(proc.stdout))

        await wait_until(pool_complained, what="asyncpg's pool logging the failed reconnects")
        await admin.execute(f"alter role {role} login")
        total += await insert_events(admin, users, 3)
        await wait_for_effects(admin, total)
        assert await proc.stop() == 0
    finally:
        if proc.proc is not None and proc.proc.poll() is None:
            proc.kill()
        await admin.execute(f"drop role if exists {role}")
    await asyncio.sleep(0.2)  # the reader threads drain the pipes
    assert proc.stderr == []
    events = proc.events()  # every stdout line is JSON, or this raises
    assert len(events) == len([line for line in proc.stdout if line.strip()])
    foreign = [e for e in events if e.get("logger") == "asyncpg.pool"]
    assert all(e["level"] == "warning" and {"timestamp", "event"} <= set(e) for e in foreign), foreign
    assert any("exception" in e for e in foreign), "the pool's traceback should be kept, as JSON"
    assert [e["event"] for e in events][-1] == "service.stopped"


def test_operator_commands_keep_stdout_for_their_output(tmp_path: Path) -> None:
    """With the embedded database (whose start is logged) the output is still clean on stdout."""
    env = fresh_env(FLOYO_EMBEDDED="true", FLOYO_DATA_DIR=str(tmp_path / "data"))
    migrated = run_cli("migrate", env=env, timeout=180)
    assert migrated.returncode == 0, migrated.stderr
    assert migrated.stdout.splitlines()[-1].endswith("migration(s) applied")
    status = run_cli("status", "--json", env=env, timeout=180)
    assert status.returncode == 0, status.stderr
    doc = json.loads(status.stdout)  # one JSON document, nothing else
    assert {"consumers", "partitions", "dead_letters"} <= set(doc)
    logged = [json.loads(line) for line in status.stderr.splitlines()]  # logs: JSON, on stderr
    assert "embedded.ready" in [e["event"] for e in logged]
    listed = run_cli("dead-letters", "list", "--json", env=env, timeout=180)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == []
    checked = run_cli("validate-schema", env=env, timeout=180)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.startswith("schema OK") and len(checked.stdout.splitlines()) == 1
    assert all(json.loads(line)["event"] for line in checked.stderr.splitlines())
