"""`floyo-pipeline demo`: the service on the embedded database, fed by synthetic telemetry.

A handful of consenting users edit files, hop between apps and run actions that slowly get slower;
the analyzers turn that into patterns, relationships, suggestions and insights while a line per
committed batch scrolls by. Event time runs faster than the clock so the rules fire within seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import asyncpg

from floyo_pipeline.api import Consumer
from floyo_pipeline.config import Settings
from floyo_pipeline.database import database_target
from floyo_pipeline.db import connect
from floyo_pipeline.engine.wakeups import WakeupSource
from floyo_pipeline.logs import configure_logging, get_logger
from floyo_pipeline.queries import Q
from floyo_pipeline.service import Component, run_service

log = get_logger(__name__)

APPS = ("vscode", "slack", "excel", "outlook", "figma", "jira", "terminal")
FILES = (
    "src/app.py",
    "src/models.py",
    "scripts/deploy.sh",
    "reports/q3.csv",
    "notes/plan.md",
    "web/index.js",
    "config/settings.json",
    "db/report.sql",
)
START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
TICK = 0.25
EVENT_SECONDS_PER_TICK = 20


async def seed_users(admin: asyncpg.Connection, count: int) -> list[uuid.UUID]:
    users = [uuid.uuid4() for _ in range(count)]
    await admin.execute(Q["demo_seed_users"], users, list(APPS))
    return users


def _events_for_tick(
    rng: random.Random, users: Sequence[uuid.UUID], tick: int
) -> list[tuple[uuid.UUID, datetime, str, str, str | None, int | None]]:
    at = START + timedelta(seconds=tick * EVENT_SECONDS_PER_TICK)
    events: list[tuple[uuid.UUID, datetime, str, str, str | None, int | None]] = []
    for index, user in enumerate(users):
        when = at + timedelta(seconds=index)
        if tick % 2 == 0:
            events.append((user, when, "vscode", "file_modified", rng.choice(FILES), None))
        else:
            events.append((user, when, "slack", "app_focused", None, None))
        # The first user's build runs four times a tick and gets 40 % slower once it has 80 runs to
        # compare with: the performance analyzer notices.
        slowdown = 1.4 if index == 0 and tick >= 20 else 1.0
        for run in range(4 if index == 0 else 1):
            duration = max(1, int(rng.gauss(800, 15) * slowdown))
            events.append(
                (user, when + timedelta(seconds=5 + run), "terminal", "action_completed", None, duration)
            )
    return events


async def feed(admin: asyncpg.Connection, users: Sequence[uuid.UUID], stopping: asyncio.Event) -> None:
    """Insert a few rows per tick until stopped (the way clients would, one statement each)."""
    rng = random.Random(42)
    tick = 0
    while not stopping.is_set():
        rows = _events_for_tick(rng, users, tick)
        await admin.execute(
            Q["demo_insert_events"],
            [r[0] for r in rows],
            [r[1] for r in rows],
            [r[2] for r in rows],
            [r[3] for r in rows],
            [r[4] for r in rows],
            [r[5] for r in rows],
        )
        # Eight samples a simulated day, so that the daily rules have a spread to judge them by.
        sampled = START + timedelta(days=tick // 8, hours=tick % 8)
        lcp = int(2000 * 1.15 ** (tick // 8) * rng.uniform(0.98, 1.02))
        await admin.execute(Q["demo_insert_metric"], sampled, "vercel", {"lcp": lcp})
        await admin.execute(Q["demo_insert_metric"], sampled, "ci", {"queueLength": 2 + tick // 16})
        tick += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), timeout=TICK)


async def _stop_after(seconds: float, stopping: asyncio.Event) -> None:
    await asyncio.sleep(seconds)
    stopping.set()


async def demo(
    settings: Settings,
    consumers: Sequence[Consumer],
    make_sources: Callable[[Settings, str], list[WakeupSource]],
    components: Sequence[tuple[str, Component]],
    users: int,
    duration: float | None,
) -> int:
    """Run the demo; returns the service's exit code."""
    if "FLOYO_LOG_FORMAT" not in os.environ:
        configure_logging("console", settings.log_level)
    async with database_target(settings) as target:
        admin = await connect(target.admin_url)
        try:
            seeded = await seed_users(admin, users)
            log.info("demo.seeded", users=len(seeded), apps=list(APPS))
            stopping = asyncio.Event()
            tasks = [asyncio.create_task(feed(admin, seeded, stopping), name="demo-feed")]
            if duration is not None:
                tasks.append(asyncio.create_task(_stop_after(duration, stopping), name="demo-timer"))
            sources = make_sources(settings, target.service_url)
            code = await run_service(
                settings, target.service_url, consumers, sources, components, stopping=stopping
            )
            stopping.set()
            await asyncio.gather(*tasks)
            summary = await admin.fetchrow(Q["demo_summary"], seeded)
            assert summary is not None
            log.info("demo.summary", **dict(summary))
            counts = ", ".join(
                f"{summary[k]} {k}" for k in ("patterns", "relationships", "suggestions", "insights")
            )
            print(f"demo: {summary['events']} events from {len(seeded)} users became {counts}", flush=True)
            return code
        finally:
            await admin.close()
