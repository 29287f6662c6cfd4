"""The embedded server after a kill -9 during a first start: the next `run --embedded` finishes the set-up,
becomes ready and processes rows, and when it stops it stops the server the killed one left running."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import asyncpg
import psutil

from floyo_pipeline.embedded import EmbeddedPostgres
from tests.support.ops import http
from tests.support.service import ROOT, ServiceProcess, fresh_env, users_with_events, wait_until


def postmaster(data: Path) -> tuple[psutil.Process, EmbeddedPostgres]:
    """The server running on `data` (from its postmaster.pid: pid first, socket folder fifth)."""
    lines = (data / "pgdata" / "postmaster.pid").read_text().splitlines()
    return psutil.Process(int(lines[0])), EmbeddedPostgres(socket_dir=Path(lines[4]))


def gone(proc: psutil.Process) -> bool:
    try:
        return bool(proc.status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def kill_during_setup(data: Path, step: str) -> None:
    killed = subprocess.run(
        [sys.executable, "-m", "tests.support.embedded_setup", str(data), step],
        cwd=ROOT,
        env=fresh_env(),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr


async def test_a_run_killed_mid_setup_is_finished_by_the_next_run_which_stops_the_server_left_behind(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    # Killed right after the bootstrap superuser became supabase_admin, before the new `postgres`.
    kill_during_setup(data, "embedded_rename_bootstrap_superuser")
    left, pg = postmaster(data)
    assert not gone(left), "the killed process's server should still be running"

    try:
        proc = ServiceProcess(
            None,
            "run",
            env={"FLOYO_EMBEDDED": "true", "FLOYO_DATA_DIR": str(data), "FLOYO_HTTP_HOST": "127.0.0.1"},
        ).start()
        try:
            await proc.wait_for_event("http.listening", timeout=180)
            port = next(e["port"] for e in proc.events() if e["event"] == "http.listening")

            async def ready() -> bool:
                return (await http(f"http://127.0.0.1:{port}/readyz")).status == 200

            await wait_until(ready, 60, what="/readyz 200")
            conn = await asyncpg.connect(pg.owner_url)
            try:
                await users_with_events(conn, 1, 1)
                row = await conn.fetchval("select max(id) from public.telemetry_events")

                async def processed() -> bool:
                    # Each consumer of the stream has a checkpoint (of the row's partition) past the row.
                    return bool(
                        await conn.fetchval(
                            "select coalesce(bool_and(past), false) from (select consumer,"
                            " bool_or(position_id >= $1) as past from floyo_pipeline.checkpoints"
                            " where stream = 'telemetry_events' group by consumer) c",
                            row,
                        )
                    )

                await wait_until(processed, 60, what="every telemetry consumer past the new row")
            finally:
                await conn.close()
            assert await proc.stop() == 0
        finally:
            if proc.proc is not None and proc.proc.poll() is None:
                proc.kill()

        async def stopped() -> bool:
            return gone(left)

        await wait_until(stopped, 30, what="the server left behind to stop")
        assert not (data / "pgdata" / "postmaster.pid").exists()
        assert [e["event"] for e in proc.events() if e["event"].startswith("embedded.")] == [
            "embedded.dead_users_forgotten",
            "embedded.ready",
        ]
    finally:
        if not gone(left):  # a failed run must not leave it behind either
            left.send_signal(signal.SIGINT)
