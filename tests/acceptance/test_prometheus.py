"""Acceptance: a real Prometheus server scrapes the service on loopback and reads back its counters."""

from __future__ import annotations

import asyncio
import json
import subprocess
import urllib.parse
from pathlib import Path
from typing import Any

import asyncpg

from tests.support.consumers import EFFECTS_DDL
from tests.support.ops import free_port, http, require_binary
from tests.support.pg import TestDatabase
from tests.support.service import ServiceProcess, insert_events, make_users, wait_until

ROOT = Path(__file__).resolve().parents[2]


async def query(api: str, promql: str) -> list[dict[str, Any]]:
    try:
        reply = await http(f"{api}/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
    except OSError:  # not listening yet
        return []
    if reply.status != 200:
        return []
    doc = json.loads(reply.body)
    result: list[dict[str, Any]] = doc["data"]["result"]
    return result


def start_prometheus(binary: str, config: Path, web_port: int, tsdb: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--web.listen-address=127.0.0.1:{web_port}",
            f"--storage.tsdb.path={tsdb}",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


async def test_prometheus_scrapes_the_service(
    database: TestDatabase, admin: asyncpg.Connection, tmp_path: Path
) -> None:
    prometheus = require_binary("prometheus")
    await admin.execute(EFFECTS_DDL)
    users = await make_users(admin, 6)
    n = await insert_events(admin, users, 15)
    service = ServiceProcess(
        database.service_url,
        env={"FLOYO_CONSUMERS": "tests.support.consumers:recorders", "FLOYO_HTTP_HOST": "127.0.0.1"},
    ).start()
    await service.wait_for_event("http.listening")
    port = next(e["port"] for e in service.events() if e["event"] == "http.listening")

    async def processed() -> bool:
        return int(await admin.fetchval("select count(*) from public.test_effects")) == n

    await wait_until(processed, what=f"{n} effects")

    web_port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n"
        "  - job_name: floyo\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
    )
    server = start_prometheus(prometheus, config, web_port, tmp_path / "tsdb")
    api = f"http://127.0.0.1:{web_port}"
    try:

        async def up() -> bool:
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            result = await query(api, 'up{job="floyo"}')
            return bool(result) and result[0]["value"][1] == "1"

        await wait_until(up, timeout=90, interval=0.5, what="up == 1 in Prometheus")

        counted: list[float] = []

        async def counter_says_n() -> bool:
            result = await query(
                api, 'sum(floyo_pipeline_events_total{job="floyo",consumer="recorder",outcome="processed"})'
            )
            if result:
                counted.append(float(result[0]["value"][1]))
            return bool(counted) and counted[-1] == n

        await wait_until(
            counter_says_n, timeout=60, interval=0.5, what=f"events_total == {n} ({counted[-1:]})"
        )
        lag = await query(api, 'floyo_pipeline_lag_events{job="floyo",consumer="recorder"}')
        assert lag and float(lag[0]["value"][1]) == 0
        build = await query(api, "floyo_pipeline_build_info")
        assert build and build[0]["metric"]["version"]
    finally:
        server.terminate()
        await asyncio.to_thread(server.wait, 30)
        assert await service.stop() == 0
