"""The always-on service: one shutdown event, supervised named tasks, a staged drain.

Stop order on SIGTERM/SIGINT: stop wake-ups and new batches → finish the batch in flight → release
leases → stop the HTTP port and jobs → close the pool. A second signal exits at once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

import anyio
import asyncpg
from anyio import TASK_STATUS_IGNORED
from anyio.abc import TaskStatus

from floyo_pipeline.api import Consumer
from floyo_pipeline.config import Settings
from floyo_pipeline.db import create_pool, is_superuser
from floyo_pipeline.engine.batch import RetryPolicy
from floyo_pipeline.engine.leases import EngineConfig, LeaseManager
from floyo_pipeline.engine.wakeups import PollSource, WakeHub, WakeupSource
from floyo_pipeline.logs import get_logger

log = get_logger(__name__)

FORCED_EXIT_CODE = 130
# Of the shutdown grace: waiting for batches in flight, then releasing leases and closing the rest.
DRAIN_SHARE = 0.7


class StartupError(Exception):
    """The service cannot start as configured (reported as one line, exit 2)."""


@dataclass
class Runtime:
    """What the running service shares with its components (HTTP port, jobs, readiness)."""

    settings: Settings
    pool: asyncpg.Pool
    manager: LeaseManager
    hub: WakeHub
    sources: list[WakeupSource]
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    task_names: set[str] = field(default_factory=set)
    dead_tasks: list[str] = field(default_factory=list)


Component = Callable[[Runtime], Awaitable[None]]


def default_replica_id() -> str:
    return os.environ.get("FLY_MACHINE_ID") or f"{socket.gethostname()}-{os.getpid()}"


async def _watch_signals(runtime: Runtime, *, task_status: TaskStatus[None] = TASK_STATUS_IGNORED) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        task_status.started()
        async for signum in signals:
            if runtime.stopping.is_set():
                log.warning("service.forced_exit", signal=signal.Signals(signum).name)
                os._exit(FORCED_EXIT_CODE)
            log.info("service.stopping", signal=signal.Signals(signum).name)
            runtime.stopping.set()


async def _grace_timer(runtime: Runtime, scope: anyio.CancelScope) -> None:
    """The backstop: the engine abandons a batch past DRAIN_SHARE of the grace and releases its leases;
    whatever still runs when the grace is over is cancelled."""
    await runtime.stopping.wait()
    await anyio.sleep(runtime.settings.shutdown_grace_seconds)
    log.warning("service.grace_exceeded", grace_seconds=runtime.settings.shutdown_grace_seconds)
    scope.cancel()


async def _supervised(runtime: Runtime, name: str, work: Callable[[], Awaitable[None]]) -> None:
    runtime.task_names.add(name)
    try:
        await work()
    except anyio.get_cancelled_exc_class():
        raise
    except Exception:
        runtime.dead_tasks.append(name)
        log.exception("task.crashed", task=name)
        raise
    if not runtime.stopping.is_set():
        runtime.dead_tasks.append(name)
        raise RuntimeError(f"supervised task {name} exited unexpectedly")


async def run_service(
    settings: Settings,
    url: str,
    consumers: Sequence[Consumer],
    sources: Sequence[WakeupSource],
    components: Sequence[tuple[str, Component]] = (),
    retry: RetryPolicy | None = None,
    stopping: asyncio.Event | None = None,
) -> int:
    """Run until signalled (or `stopping` is set); returns the process exit code."""
    pool = await create_pool(url, size=settings.max_concurrency + 2)
    try:
        async with pool.acquire() as conn:
            if await is_superuser(conn) and not settings.allow_superuser:
                raise StartupError(
                    "refusing to run as a superuser: connect as a role granted floyo_pipeline_worker "
                    "(or set FLOYO_ALLOW_SUPERUSER=true)"
                )
        replica_id = settings.replica_id or default_replica_id()
        config = EngineConfig(
            replica_id=replica_id,
            batch_size=settings.batch_size,
            lease_ttl=settings.lease_ttl_seconds,
            max_concurrency=settings.max_concurrency,
            readers_per_stream=settings.readers_per_stream,
            batch_max_bytes=settings.batch_max_bytes,
            max_row_bytes=settings.max_row_bytes,
            drain_seconds=settings.shutdown_grace_seconds * DRAIN_SHARE,
            retry=retry or RetryPolicy(),
        )
        hub = WakeHub()
        manager = LeaseManager(pool, consumers, config, hub)
        await manager.prepare()
        all_sources: list[WakeupSource] = [PollSource(settings.poll_interval_seconds), *sources]
        runtime = Runtime(settings, pool, manager, hub, all_sources, stopping or asyncio.Event())
        async with anyio.create_task_group() as tg:
            # Signals are handled from here on: "service.started" means SIGTERM drains gracefully.
            await tg.start(_watch_signals, runtime, name="signals")
            log.info(
                "service.started",
                replica_id=replica_id,
                consumers=[c.name for c in consumers],
                wakeup=settings.wakeup.value,
                batch_size=settings.batch_size,
            )
            tg.start_soon(_grace_timer, runtime, tg.cancel_scope, name="grace")
            for source in all_sources:
                name = f"source:{source.health.name}"
                tg.start_soon(_supervised, runtime, name, partial(source.run, hub), name=name)
            for name, component in components:
                tg.start_soon(_supervised, runtime, name, partial(component, runtime), name=name)
            await _supervised(runtime, "leases", partial(manager.run, runtime.stopping))
            tg.cancel_scope.cancel()
        log.info("service.stopped", replica_id=replica_id)
        return 0
    finally:
        await pool.close()
