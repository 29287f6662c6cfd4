"""The HTTP port over real HTTP: health, readiness (with a real database outage), status and metrics."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Callable

import asyncpg
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families

from tests.support.consumers import EFFECTS_DDL, EffectRecorder
from tests.support.ops import Reply, http, require_binary, sample, serving
from tests.support.pg import SERVICE_USER, TestDatabase
from tests.support.service import fresh_env, insert_events, make_users, run_cli, wait_until


async def scrape_until(url: str, check: Callable[[str], bool], what: str) -> str:
    """Scrape `url` until `check` holds: what the port reports is a snapshot of bounded age."""
    text = ""

    async def holds() -> bool:
        nonlocal text
        text = (await http(url)).body.decode()
        return check(text)

    await wait_until(holds, timeout=10, what=what)
    return text


def processed_total(metrics: str) -> float | None:
    """The recorder's count of processed telemetry rows in a /metrics text."""
    labels = {"stream": "telemetry_events", "consumer": "recorder", "outcome": "processed"}
    return sample(metrics, "floyo_pipeline_events_total", **labels)


async def effect_count(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("select count(*) from public.test_effects"))


async def test_endpoints_answer_over_http(database: TestDatabase, admin: asyncpg.Connection) -> None:
    await admin.execute(EFFECTS_DDL)
    users = await make_users(admin, 4)
    async with serving(database.service_url, [EffectRecorder()]) as svc:
        health = await http(svc.base + "/healthz")
        assert health.status == 200
        assert health.headers["content-type"] == "application/json"
        assert health.json()["status"] == "ok"

        ready = await http(svc.base + "/readyz")
        assert ready.status == 200, ready.body
        doc = ready.json()
        assert doc["ready"] is True and doc["reasons"] == []
        assert doc["database"] == {"reachable": True}
        assert {s["name"]: s["connected"] for s in doc["wakeup"]["sources"]} == {"poll": True, "notify": True}
        assert doc["wakeup"]["mode"] == "normal"
        assert {"leases", "http", "source:poll", "source:notify"} <= set(doc["tasks"]["supervised"])
        assert doc["tasks"]["dead"] == []

        n = await insert_events(admin, users, 25)

        async def processed() -> bool:
            return await effect_count(admin) == n

        await wait_until(processed, what=f"{n} effects")

        status = await http(svc.base + "/status")
        assert status.status == 200 and status.headers["content-type"] == "application/json"
        body = status.json()
        assert set(body) == {"consumers", "partitions", "dead_letters"}
        (summary,) = body["consumers"]
        assert summary["consumer"] == "recorder" and summary["stream"] == "telemetry_events"
        assert summary["processed_total"] == n and summary["lag_rows"] == 0
        assert summary["partitions_leased"] == 64
        assert len(body["partitions"]) == 64
        assert {"position", "lag_rows", "lag_seconds", "lease_owner"} <= set(body["partitions"][0])

        # The same document as `floyo-pipeline status --json` (lease expiry moves with each renewal).
        cli = run_cli("status", "--json", env=fresh_env(DATABASE_URL=database.service_url))
        assert cli.returncode == 0, cli.stderr
        from_cli = json.loads(cli.stdout)
        assert from_cli["consumers"] == body["consumers"]
        assert [(p["partition"], p["position"], p["lease_owner"]) for p in from_cli["partitions"]] == [
            (p["partition"], p["position"], p["lease_owner"]) for p in body["partitions"]
        ]

        missing = await http(svc.base + "/nope")
        assert missing.status == 404 and missing.json()["error"] == "not found"
        for path in ("/healthz", "/readyz", "/status", "/metrics"):
            wrong = await http(svc.base + path, method="POST")
            assert wrong.status == 405, path
            assert wrong.headers["allow"] == "GET, HEAD"
        head = await http(svc.base + "/healthz", method="HEAD")
        assert head.status == 200 and head.body == b""


async def test_metrics_text_openmetrics_promtool_and_counts(
    database: TestDatabase, admin: asyncpg.Connection
) -> None:
    promtool = require_binary("promtool")
    await admin.execute(EFFECTS_DDL)
    users = await make_users(admin, 5)
    # A consumer no replica runs: its lag is whatever the database says at scrape time.
    await admin.execute(
        """insert into floyo_pipeline.checkpoints (consumer, stream, partition)
           select 'ghost', 'telemetry_events', p from generate_series(0, 63) p"""
    )
    await admin.execute(
        """insert into floyo_pipeline.dead_letters
             (consumer, stream, partition, row_id, error_class, error_message, attempts)
           values ('ghost', 'telemetry_events', 0, 1, 'E', 'x', 1),
                  ('ghost', 'telemetry_events', 1, 2, 'E', 'x', 1)"""
    )
    async with serving(database.service_url, [EffectRecorder()]) as svc:
        before = await http(svc.base + "/metrics")
        base = processed_total(before.body.decode()) or 0.0
        n = await insert_events(admin, users, 20)

        async def processed() -> bool:
            return await effect_count(admin) == n

        await wait_until(processed, what=f"{n} effects")

        reply = await http(svc.base + "/metrics")
        assert reply.status == 200
        assert reply.headers["content-type"].startswith("text/plain; version=0.0.4")

        def counted(text: str) -> bool:
            after = processed_total(text)
            return after is not None and after - base == n

        text = await scrape_until(svc.base + "/metrics", counted, f"{n} rows counted as processed")
        names = {f.name for f in text_string_to_metric_families(text)}
        for expected in (
            "floyo_pipeline_events",
            "floyo_pipeline_batch_duration_seconds",
            "floyo_pipeline_end_to_end_latency_seconds",
            "floyo_pipeline_lag_events",
            "floyo_pipeline_lag_seconds",
            "floyo_pipeline_wakeups",
            "floyo_pipeline_source_connected",
            "floyo_pipeline_dead_letters",
            "floyo_pipeline_leases_held",
            "floyo_pipeline_build_info",
        ):
            assert expected in names, expected
        after = processed_total(text)
        assert after is not None and after - base == n
        assert sample(text, "floyo_pipeline_lag_events", consumer="ghost", stream="telemetry_events") == n
        assert sample(text, "floyo_pipeline_lag_events", consumer="recorder", stream="telemetry_events") == 0
        assert sample(text, "floyo_pipeline_dead_letters", consumer="ghost") == 2
        assert sample(text, "floyo_pipeline_source_connected", source="notify") == 1
        assert sample(text, "floyo_pipeline_leases_held") == 64
        assert "user_id" not in text

        # Fresh within the snapshot's age: more rows and a resolved dead letter show at a later scrape.
        more = await insert_events(admin, users, 3)
        await admin.execute("update floyo_pipeline.dead_letters set status = 'discarded' where row_id = 1")
        again = await scrape_until(
            svc.base + "/metrics",
            lambda t: (
                sample(t, "floyo_pipeline_lag_events", consumer="ghost") == n + more
                and sample(t, "floyo_pipeline_dead_letters", consumer="ghost") == 1
            ),
            "the new lag and the resolved dead letter",
        )

        check = await asyncio.to_thread(
            subprocess.run,
            [promtool, "check", "metrics"],
            input=again,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert check.returncode == 0, check.stdout + check.stderr

        om: Reply = await http(svc.base + "/metrics", headers={"Accept": "application/openmetrics-text"})
        assert om.status == 200
        assert om.headers["content-type"].startswith("application/openmetrics-text")
        om_text = om.body.decode()
        assert om_text.endswith("# EOF\n")
        om_names = {f.name for f in openmetrics_families(om_text)}  # type: ignore[no-untyped-call]
        assert "floyo_pipeline_events" in om_names and "floyo_pipeline_lag_events" in om_names


async def test_readyz_follows_a_database_outage(database: TestDatabase, admin: asyncpg.Connection) -> None:
    async def cut_off() -> None:
        # No new connection for the service's role (Postgres answers "too many connections for role",
        # as when a pooler or the server is saturated) and every existing one dropped.
        await admin.execute(f"alter role {SERVICE_USER} connection limit 0")
        await admin.execute(
            """select pg_terminate_backend(pid) from pg_stat_activity
               where usename = $1 and datname = current_database()""",
            SERVICE_USER,
        )

    try:
        async with serving(database.service_url, [EffectRecorder()]) as svc:
            assert (await http(svc.base + "/readyz")).status == 200
            port_env = fresh_env(FLOYO_HTTP_PORT=str(svc.http.port), FLOYO_HTTP_HOST="127.0.0.1")
            ok = await asyncio.to_thread(run_cli, "healthcheck", env=port_env)
            assert ok.returncode == 0, ok.stdout + ok.stderr
            assert ok.stdout.startswith("ready")

            await cut_off()
            down: list[Reply] = []

            async def unready() -> bool:
                reply = await http(svc.base + "/readyz")
                down.append(reply)
                return reply.status == 503

            await wait_until(unready, what="/readyz 503")
            doc = down[-1].json()
            assert doc["ready"] is False and doc["database"] == {"reachable": False}
            assert any(r.startswith("database unreachable") for r in doc["reasons"]), doc
            assert down[-1].headers["content-type"] == "application/json"
            # Liveness is the loop answering, not the database.
            assert (await http(svc.base + "/healthz")).status == 200
            failed = await asyncio.to_thread(run_cli, "healthcheck", env=port_env)
            assert failed.returncode == 1
            assert "database unreachable" in failed.stdout

            await admin.execute(f"alter role {SERVICE_USER} connection limit -1")

            async def ready_again() -> bool:
                return (await http(svc.base + "/readyz")).status == 200

            await wait_until(ready_again, what="/readyz 200 after the database returns")
            assert not svc.task.done()
    finally:
        await admin.execute(f"alter role {SERVICE_USER} connection limit -1")


async def test_healthcheck_without_a_service_fails_with_the_reason() -> None:
    from tests.support.ops import free_port

    result = await asyncio.to_thread(run_cli, "healthcheck", env=fresh_env(FLOYO_HTTP_PORT=str(free_port())))
    assert result.returncode == 1
    assert result.stdout.startswith("not ready:") and "/readyz" in result.stdout
