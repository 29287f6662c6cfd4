"""Run the service for tests: in-process (fast) or as the real CLI in a subprocess (signals, kill -9)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg

from floyo_pipeline.api import Consumer
from floyo_pipeline.config import Settings, load_settings
from floyo_pipeline.engine.apply import RetryPolicy
from floyo_pipeline.engine.wakeups import NotifySource, WakeupSource
from floyo_pipeline.service import Component, run_service

ROOT = Path(__file__).resolve().parents[2]
FAST_RETRY = RetryPolicy(handler_attempts=2, handler_backoff_seconds=0.01)


async def wait_until(
    check: Callable[[], Awaitable[bool]],
    timeout: float = 30.0,
    interval: float = 0.05,
    what: str = "condition",
) -> None:
    """Poll `check` until it is true; fail the test with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def peak_rss(pid: int) -> int:
    """The process's high-water mark of resident memory (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


async def make_users(conn: asyncpg.Connection, n: int) -> list[uuid.UUID]:
    users = [uuid.uuid4() for _ in range(n)]
    await conn.execute("insert into auth.users (id) select unnest($1::uuid[])", users)
    return users


async def insert_events(
    conn: asyncpg.Connection,
    users: Sequence[uuid.UUID],
    per_user: int,
    app_id: str = "vscode",
    event_type: str = "app_focused",
) -> int:
    """Insert `per_user` rows for each user, interleaved, in one statement; returns the count."""
    await conn.execute(
        """insert into public.telemetry_events (user_id, occurred_at, app_id, event_type)
           select u, timestamptz '2026-01-01' + make_interval(secs => g), $2, $3
           from generate_series(1, $4) g, unnest($1::uuid[]) u
           order by g""",
        list(users),
        app_id,
        event_type,
        per_user,
    )
    return len(users) * per_user


async def users_with_events(conn: asyncpg.Connection, n: int, per_user: int, **event: str) -> list[uuid.UUID]:
    """`n` new users with `per_user` telemetry rows each (see `insert_events`)."""
    users = await make_users(conn, n)
    await insert_events(conn, users, per_user, **event)
    return users


def service_settings(url: str, **settings: Any) -> Settings:
    """Settings for a service under test: quick polls and leases, an ephemeral HTTP port, and scheduled
    jobs only where a test asks for them (a run crossing 02:00 UTC must not clean up)."""
    settings.setdefault("poll_interval_seconds", 0.5)
    settings.setdefault("lease_ttl_seconds", 3)
    settings.setdefault("http_port", 0)
    settings.setdefault("retention_schedule", "0")
    settings.setdefault("metrics_snapshot_schedule", "0")
    return load_settings(database_url=url, **settings)


@asynccontextmanager
async def service_task(
    url: str,
    config: Settings,
    consumers: Sequence[Consumer],
    sources: Sequence[WakeupSource] | None = None,
    retry: RetryPolicy = FAST_RETRY,
    components: Sequence[tuple[str, Component]] = (),
) -> AsyncIterator[asyncio.Task[int]]:
    """The service in this process and event loop (NOTIFY wake-ups unless `sources` say otherwise);
    stopped (drained) when the block ends."""
    stopping = asyncio.Event()
    chosen = [NotifySource(url)] if sources is None else list(sources)
    task = asyncio.create_task(
        run_service(config, url, consumers, chosen, components, retry=retry, stopping=stopping)
    )
    try:
        yield task
    finally:
        stopping.set()
        await asyncio.wait_for(task, timeout=30)


@asynccontextmanager
async def running_service(
    url: str,
    consumers: Sequence[Consumer],
    sources: Sequence[WakeupSource] | None = None,
    retry: RetryPolicy = FAST_RETRY,
    **settings: Any,
) -> AsyncIterator[asyncio.Task[int]]:
    """The service in this process and event loop; stopped (drained) when the block ends."""
    async with service_task(url, service_settings(url, **settings), consumers, sources, retry) as task:
        yield task


def fresh_env(*layers: Mapping[str, str], **env: str) -> dict[str, str]:
    """The environment of a fresh shell (nothing that configures the service: no FLOYO_*, SUPABASE_*,
    DATABASE_URL) with the repository importable, then each of `layers` and `env` on top, in order."""
    fresh = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FLOYO_", "SUPABASE_")) and k not in {"DATABASE_URL", "TEST_DATABASE_URL"}
    }
    fresh["PYTHONPATH"] = str(ROOT)
    for layer in layers:
        fresh.update(layer)
    return {**fresh, **env}


def run_cli(*args: str, env: Mapping[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`python -m floyo_pipeline ARGS` run to its end in exactly `env`, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "floyo_pipeline", *args],
        env=dict(env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class ServiceProcess:
    """`python -m floyo_pipeline ARGS` with its stdout/stderr collected line by line."""

    def __init__(self, database_url: str | None, *args: str, env: dict[str, str] | None = None) -> None:
        """`database_url` None: a fresh shell's environment (see `fresh_env`), for the embedded server."""
        self.args = args or ("run",)
        base = fresh_env() if database_url is None else {**os.environ, "DATABASE_URL": database_url}
        self.env = {
            **base,
            "FLOYO_HTTP_PORT": "0",
            "FLOYO_POLL_INTERVAL_SECONDS": "0.5",
            "FLOYO_LEASE_TTL_SECONDS": "3",
            "FLOYO_RETENTION_SCHEDULE": "0",
            "FLOYO_METRICS_SNAPSHOT_SCHEDULE": "0",
            "PYTHONPATH": str(ROOT),
            **(env or {}),
        }
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> ServiceProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "floyo_pipeline", *self.args],
            env=self.env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for stream, sink in ((self.proc.stdout, self.stdout), (self.proc.stderr, self.stderr)):
            threading.Thread(target=self._pump, args=(stream, sink), daemon=True).start()
        return self

    @staticmethod
    def _pump(stream: Any, sink: list[str]) -> None:
        for line in stream:
            sink.append(line.rstrip("\n"))

    def events(self) -> list[dict[str, Any]]:
        """Every stdout line parsed as JSON (raises if one is not JSON)."""
        return [json.loads(line) for line in list(self.stdout) if line.strip()]

    def has_event(self, name: str) -> bool:
        return any(f'"event": "{name}"' in line for line in list(self.stdout))

    async def wait_for_event(self, name: str, timeout: float = 30.0) -> None:
        async def seen() -> bool:
            if self.proc is not None and self.proc.poll() is not None and not self.has_event(name):
                raise AssertionError(
                    f"service exited {self.proc.returncode}: {self.stderr[-5:]} {self.stdout[-5:]}"
                )
            return self.has_event(name)

        await wait_until(seen, timeout, what=f"log event {name}")

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.wait(10)

    async def stop(self, timeout: float = 30.0) -> int:
        self.signal(signal.SIGTERM)
        return await asyncio.to_thread(self.wait, timeout)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def __del__(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
