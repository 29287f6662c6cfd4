"""The always-on service: one shutdown event, supervised named tasks, a staged drain.

Start order: signal handlers (so SIGTERM is honoured from the first instant, also as PID 1, which
ignores any signal it has no handler for) → the components' ports → the pool, bounded by
FLOYO_CONNECT_TIMEOUT_SECONDS → the privilege check → "service.started". A signal before that ends
the start-up at once with exit 0; a failure is one StartupError or DatabaseUnavailable line.

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
from typing import TypeVar

import anyio
import asyncpg

from floyo_pipeline import exits
from floyo_pipeline.api import Consumer
from floyo_pipeline.config import Settings
from floyo_pipeline.connections import DatabaseUnavailable, connect_failure, create_pool, excess_privileges
from floyo_pipeline.engine.apply import RetryPolicy
from floyo_pipeline.engine.errors import DATABASE_ERRORS
from floyo_pipeline.engine.leases import EngineConfig, LeaseManager
from floyo_pipeline.engine.wakeups import PollSource, WakeHub, WakeupSource
from floyo_pipeline.logs import get_logger

log = get_logger(__name__)
_T = TypeVar("_T")

FORCED_EXIT_CODE = exits.FORCED
_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# Of the shutdown grace: waiting for batches in flight, then releasing leases and closing the rest.
DRAIN_SHARE = 0.7


class StartupError(Exception):
    """The service cannot start as configured (reported as one line, `exit_code`, 2 by default)."""

    def __init__(self, message: str, exit_code: int = exits.USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class _StoppedEarly(Exception):
    """A signal arrived before the service started."""


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


# A component may also have `async prepare()` (run before "service.started": claim a port, or raise
# StartupError) and `close()` (undo prepare when the component never ran).
Component = Callable[[Runtime], Awaitable[None]]


def default_replica_id() -> str:
    return os.environ.get("FLY_MACHINE_ID") or f"{socket.gethostname()}-{os.getpid()}"


def _on_signal(signum: int, stopping: asyncio.Event) -> None:
    if stopping.is_set():
        log.warning("service.forced_exit", signal=signal.Signals(signum).name)
        os._exit(FORCED_EXIT_CODE)
    log.info("service.stopping", signal=signal.Signals(signum).name)
    stopping.set()


def _handle_signals(stopping: asyncio.Event) -> Callable[[], None]:
    """Install the SIGTERM/SIGINT handlers now (synchronously); returns the function removing them."""
    loop = asyncio.get_running_loop()
    for signum in _SIGNALS:
        loop.add_signal_handler(signum, _on_signal, signum, stopping)

    def remove() -> None:
        for signum in _SIGNALS:
            loop.remove_signal_handler(signum)

    return remove


async def _unless_stopped(stopping: asyncio.Event, step: Callable[[], Awaitable[_T]]) -> _T:
    """`await step()`, cancelled as soon as `stopping` is set (then _StoppedEarly)."""
    work = asyncio.ensure_future(step())
    stop = asyncio.ensure_future(stopping.wait())
    try:
        await asyncio.wait({work, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
        if not work.done():
            work.cancel()
            await asyncio.wait({work})
    if work.cancelled():
        raise _StoppedEarly
    return work.result()


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


async def _connect(settings: Settings, url: str) -> asyncpg.Pool:
    """The pool, once the login role has shown it is least privileged; bounded by the connect timeout."""
    timeout = settings.connect_timeout_seconds
    try:
        # asyncpg bounds the connect; this also bounds the session setup that follows it.
        with anyio.fail_after(2 * timeout):
            pool = await create_pool(url, size=settings.max_concurrency + 2, timeout=timeout)
    except TimeoutError as err:
        raise connect_failure(err, timeout) from None
    try:
        try:
            with anyio.fail_after(timeout):
                async with pool.acquire() as conn:
                    too_much = await excess_privileges(conn)
        except DATABASE_ERRORS as err:
            raise connect_failure(err, timeout) from None
        if too_much and not settings.allow_superuser:
            raise StartupError(
                f"refusing to run with more privilege than floyo_pipeline_worker: {too_much} (connect "
                "as a role granted only floyo_pipeline_worker, or set FLOYO_ALLOW_SUPERUSER=true)"
            )
    except BaseException:
        pool.terminate()
        raise
    return pool


async def _prepare_engine(manager: LeaseManager) -> None:
    try:
        await manager.prepare()
    except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError) as err:
        raise DatabaseUnavailable(
            "the database has no floyo-pipeline schema: run `floyo-pipeline migrate` as its owner "
            f"({type(err).__name__}: {err})",
            exits.DATABASE_REFUSED,
        ) from None
    except asyncpg.InsufficientPrivilegeError as err:
        raise DatabaseUnavailable(
            "permission denied: DATABASE_URL's role must be granted floyo_pipeline_worker "
            f"({type(err).__name__}: {err})",
            exits.DATABASE_REFUSED,
        ) from None


def _prepared(components: Sequence[tuple[str, Component]]) -> list[Callable[[], Awaitable[None]]]:
    return [p for _, c in components if (p := getattr(c, "prepare", None)) is not None]


def _close(components: Sequence[tuple[str, Component]]) -> None:
    for _, component in components:
        close = getattr(component, "close", None)
        if close is not None:
            close()


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
    stopping = stopping or asyncio.Event()
    # First of all: no signal may be lost (or ignored, as PID 1 would) while the database is slow.
    unhandle_signals = _handle_signals(stopping)
    try:
        return await _run(settings, url, consumers, sources, components, retry, stopping)
    except _StoppedEarly:
        log.info("service.stopped", before_start=True)
        return exits.OK
    finally:
        _close(components)
        unhandle_signals()


async def _run(
    settings: Settings,
    url: str,
    consumers: Sequence[Consumer],
    sources: Sequence[WakeupSource],
    components: Sequence[tuple[str, Component]],
    retry: RetryPolicy | None,
    stopping: asyncio.Event,
) -> int:
    for prepare in _prepared(components):
        await prepare()
    pool = await _unless_stopped(stopping, partial(_connect, settings, url))
    try:
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
        await _unless_stopped(stopping, partial(_prepare_engine, manager))
        all_sources: list[WakeupSource] = [PollSource(settings.poll_interval_seconds), *sources]
        runtime = Runtime(settings, pool, manager, hub, all_sources, stopping)
        async with anyio.create_task_group() as tg:
            # From here on a signal drains gracefully.
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
        return exits.OK
    finally:
        await pool.close()
