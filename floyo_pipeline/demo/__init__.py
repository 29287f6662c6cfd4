"""`floyo-pipeline demo`: the service on its own database, fed by a synthetic week of telemetry.

The terminal shows what the product does: each suggestion and insight as it appears (for whom, what,
why), running counts and lag, then a summary. The service's own log lines go to a file in the data
folder; its warnings and errors are shown as well.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

import structlog

from floyo_pipeline.api import Consumer
from floyo_pipeline.config import Settings
from floyo_pipeline.connections import open_connection
from floyo_pipeline.demo.feed import DemoUser, feed, make_users, seed_users
from floyo_pipeline.demo.view import View, make_view
from floyo_pipeline.demo.watch import Counts, Watcher
from floyo_pipeline.engine.wakeups import WakeupSource
from floyo_pipeline.service import Component, run_service
from floyo_pipeline.target import database_target

REFRESH_SECONDS = 0.5
LOG_FILE = "demo.log"


class _LogToFile:
    """structlog's logger for the demo: every line to the log file; warnings and errors also shown."""

    def __init__(self, file: TextIO, alert: Callable[[str], None]) -> None:
        self.file = file
        self.alert = alert

    def msg(self, message: str) -> None:
        self.file.write(message + "\n")
        self.file.flush()

    debug = info = log = msg

    def warning(self, message: str) -> None:
        self.msg(message)
        self.alert(message)

    warn = error = err = critical = exception = fatal = failure = warning


def _alert_text(line: str) -> str:
    try:
        doc = json.loads(line)
    except ValueError:
        return f"service: {line[:200]}"
    return f"service {doc.get('level', 'warning')}: {doc.get('event', '?')}"


def summary_lines(counts: Counts, users: Sequence[DemoUser], elapsed: float, log_path: Path) -> list[str]:
    return [
        f"service log: {log_path}",
        f"demo: {counts.events:,} events from {len(users)} users became {counts.patterns:,} patterns, "
        f"{counts.relationships:,} relationships, {counts.suggestions:,} suggestions and "
        f"{counts.insights:,} insights ({counts.user_insights:,} about the users, {counts.global_insights:,} "
        f"global) in {elapsed:.0f} s",
    ]


async def _watch(watcher: Watcher, view: View, fed: list[int], began: float, stopping: asyncio.Event) -> None:
    while True:
        for found in await watcher.poll(fed[0]):
            view.finding(found, time.monotonic() - began)
        view.update(watcher.counts, time.monotonic() - began)
        if stopping.is_set():
            return
        try:
            await asyncio.wait_for(stopping.wait(), timeout=REFRESH_SECONDS)
        except TimeoutError:
            continue


async def _stop_after(seconds: float, stopping: asyncio.Event) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), timeout=seconds)
    stopping.set()


async def demo(
    settings: Settings,
    consumers: Sequence[Consumer],
    make_sources: Callable[[Settings, str], list[WakeupSource]],
    components: Sequence[tuple[str, Component]],
    users: int,
    duration: float | None,
    out: TextIO | None = None,
) -> int:
    """Run the demo until Ctrl-C or `duration`; returns the service's exit code."""
    out = out or sys.stdout
    where = "DATABASE_URL" if settings.database_url else f"an embedded Postgres in {settings.data_dir}"
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    log_path = settings.data_dir / LOG_FILE
    people = make_users(users)
    print(
        f"demo: {len(people)} people ({', '.join(u.label for u in people[:5])}"
        f"{', ...' if len(people) > 5 else ''}) working through a week, on {where}; "
        f"HTTP on port {settings.http_port}; Ctrl-C stops",
        file=out,
        flush=True,
    )
    view = make_view(out, "floyo-pipeline demo")
    lines: list[str] = []
    with log_path.open("a") as log_file:
        previous = structlog.get_config()["logger_factory"]
        structlog.configure(
            logger_factory=lambda *_: _LogToFile(log_file, lambda line: view.note(_alert_text(line)))
        )
        try:
            code = await _run(settings, consumers, make_sources, components, people, duration, view, lines)
        finally:
            structlog.configure(logger_factory=previous)
            view.close(lines)
    return code


async def _run(
    settings: Settings,
    consumers: Sequence[Consumer],
    make_sources: Callable[[Settings, str], list[WakeupSource]],
    components: Sequence[tuple[str, Component]],
    people: list[DemoUser],
    duration: float | None,
    view: View,
    summary: list[str],
) -> int:
    """Seed, feed, watch and run the service; fills `summary` with the closing lines."""
    async with database_target(settings, embedded_by_default=True) as target:
        admin = await open_connection(target.admin_url, settings.connect_timeout_seconds)
        watch_conn = await open_connection(target.admin_url, settings.connect_timeout_seconds)
        try:
            await seed_users(admin, people)
            watcher = await Watcher.start(watch_conn, people)
            stopping = asyncio.Event()
            fed = [0]
            began = time.monotonic()
            tasks = [
                asyncio.create_task(feed(admin, people, stopping, fed), name="demo-feed"),
                asyncio.create_task(_watch(watcher, view, fed, began, stopping), name="demo-view"),
            ]
            if duration is not None:
                tasks.append(asyncio.create_task(_stop_after(duration, stopping), name="demo-timer"))
            for task in tasks:
                # A failed feed or view would leave the service idling with nothing shown: stop it.
                task.add_done_callback(
                    lambda t: stopping.set() if not t.cancelled() and t.exception() else None
                )
            try:
                code = await run_service(
                    settings,
                    target.service_url,
                    consumers,
                    make_sources(settings, target.service_url),
                    components,
                    stopping=stopping,
                )
            finally:
                stopping.set()
                outcomes = await asyncio.gather(*tasks, return_exceptions=True)
            failures = [
                f"demo: {task.get_name()} failed: {type(err).__name__}: {err}"
                for task, err in zip(tasks, outcomes, strict=True)
                if isinstance(err, Exception)
            ]
            # The last batches commit during the drain: one more look before the summary.
            for found in await watcher.poll(fed[0]):
                view.finding(found, time.monotonic() - began)
            log_path = settings.data_dir / LOG_FILE
            summary.extend(summary_lines(watcher.counts, people, time.monotonic() - began, log_path))
            if code != 0:
                summary.insert(0, f"demo: the service stopped with exit code {code}; see {log_path}")
            summary[:0] = failures
            return code or (1 if failures else 0)
        finally:
            await watch_conn.close()
            await admin.close()
