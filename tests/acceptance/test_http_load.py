"""The HTTP port under a few hundred clients looping on /status, /metrics and /readyz while the service
catches up on a backlog: readiness keeps saying ready, the database sees one status read and one
readiness check per snapshot interval, and the backlog is processed. (How long the catch-up takes with
and without the load is a benchmark figure, not a test assertion.)"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request

import asyncpg

from tests.support.consumers import EFFECTS_DDL, count_effects
from tests.support.ops import sample
from tests.support.pg import TestDatabase
from tests.support.service import ROOT, ServiceProcess, insert_events, make_users

CLIENTS = 300
BACKLOG_USERS, PER_USER = 200, 400


def probe(url: str) -> int:
    """A readiness probe as Fly's check makes it (a new connection, 5 s timeout): its status, 0 if none."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return err.code
    except OSError:
        return 0


async def test_hundreds_of_clients_do_not_starve_the_engine_or_readiness(
    database: TestDatabase, admin: asyncpg.Connection
) -> None:
    await admin.execute(EFFECTS_DDL)
    users = await make_users(admin, BACKLOG_USERS)
    total = await insert_events(admin, users, PER_USER)
    proc = ServiceProcess(database.service_url, env={"FLOYO_CONSUMERS": "tests.support.consumers:recorders"})
    proc.start()
    await proc.wait_for_event("http.listening")
    port = next(e["port"] for e in proc.events() if e["event"] == "http.listening")
    started = time.monotonic()
    load = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.support.http_load",
        "127.0.0.1",
        str(port),
        "600",
        str(CLIENTS),
        cwd=ROOT,
        stdout=subprocess.PIPE,
    )
    probes: list[int] = []
    try:
        while await count_effects(admin) < total:
            assert time.monotonic() - started < 240, "the backlog was not processed under load"
            probes.append(await asyncio.to_thread(probe, f"http://127.0.0.1:{port}/readyz"))
            await asyncio.sleep(0.5)
        elapsed = time.monotonic() - started
    finally:
        load.terminate()
        out, _ = await asyncio.wait_for(load.communicate(), timeout=30)
    served = json.loads(out) if out.strip() else {}
    metrics_text = await asyncio.to_thread(
        lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    )
    serving_seconds = time.monotonic() - started
    assert await proc.stop() == 0
    print(f"caught up on {total} rows in {elapsed:.1f}s under load; probes {probes}; served {served}")
    assert probes and all(code == 200 for code in probes), probes
    status_reads = sample(metrics_text, "floyo_pipeline_http_database_reads_total", what="status") or 0
    readiness_reads = sample(metrics_text, "floyo_pipeline_http_database_reads_total", what="readiness") or 0
    # One read per snapshot interval (1 s by default), whatever the number of requests.
    assert 0 < status_reads <= serving_seconds + 2
    assert 0 < readiness_reads <= serving_seconds + 2
