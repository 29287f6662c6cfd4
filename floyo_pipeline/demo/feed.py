"""The demo's synthetic users and their telemetry: a recent week of work, faster than the clock.

Five people with habits the analyzers recognise: files of a few kinds (integration suggestions),
hops between apps that a connector links (connector suggestions), a build that gets slower
(a performance insight) and a week of web and CI metrics with a bad day or two (global insights).
Event time starts a week ago and runs EVENT_SECONDS_PER_TICK per TICK, so the rules fire within
seconds; it never passes the present, so the nightly retention keeps every row.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from floyo_pipeline.queries import Q

TICK = 0.25
EVENT_SECONDS_PER_TICK = 20
APPS = ("vscode", "slack", "excel", "outlook", "figma", "jira", "terminal")
WEEK = 7
TICKS_PER_METRICS_DAY = 8


@dataclass(frozen=True)
class Step:
    app: str
    event_type: str
    file_path: str | None = None


@dataclass(frozen=True)
class Build:
    """A timed action `runs` times a tick, `slows_by` times slower from tick `slows_at` on. The
    performance analyzer judges a series once it has 80 runs (a baseline of 40 and 40 recent ones)."""

    median_ms: int
    slows_at: int | None = None
    slows_by: float = 1.0
    runs: int = 1


@dataclass(frozen=True)
class Persona:
    name: str
    role: str
    steps: tuple[Step, ...]
    """One step per tick, round and round."""
    build: Build | None = None


PERSONAS: tuple[Persona, ...] = (
    Persona(
        "ana",
        "data engineer",
        (
            Step("vscode", "file_modified", "pipelines/load.py"),
            Step("vscode", "file_modified", "queries/daily_report.sql"),
            Step("vscode", "file_modified", "pipelines/clean.py"),
            Step("vscode", "file_opened", "queries/daily_report.sql"),
        ),
        Build(800, slows_at=20, slows_by=1.35, runs=4),
    ),
    Persona(
        "ben",
        "web developer",
        (
            Step("vscode", "file_modified", "web/checkout.js"),
            Step("slack", "app_focused"),
            Step("vscode", "file_modified", "web/config.json"),
            Step("slack", "app_focused"),
        ),
    ),
    Persona(
        "chen",
        "analyst",
        (
            Step("excel", "file_opened", "reports/q3_sales.csv"),
            Step("outlook", "app_focused"),
            Step("excel", "file_modified", "reports/forecast.csv"),
            Step("outlook", "app_focused"),
        ),
    ),
    Persona(
        "dara",
        "ops engineer",
        (
            Step("terminal", "file_modified", "deploy/backup.sh"),
            Step("vscode", "file_modified", "docs/runbook.md"),
            Step("terminal", "file_modified", "deploy/rotate_logs.sh"),
        ),
        Build(400),
    ),
    Persona(
        "eli",
        "designer",
        (
            Step("figma", "app_focused"),
            Step("jira", "app_focused"),
            Step("figma", "file_modified", "design/onboarding.fig"),
            Step("jira", "app_focused"),
        ),
    ),
)

# One row per day of the week, oldest first: a deploy on day 3 makes pages slower to paint, the CI
# queue backs up on days 4 and 5, the database is slow on day 5.
DAILY_METRICS: tuple[tuple[tuple[str, str, float], ...], ...] = tuple(
    (("vercel", "lcp", lcp), ("ci", "queueLength", queue), ("supabase", "latencyMs", latency))
    for lcp, queue, latency in zip(
        (2100, 2080, 2120, 2860, 2870, 2850, 2880),
        (1, 2, 2, 3, 6, 5, 2),
        (120, 135, 125, 140, 150, 240, 160),
        strict=True,
    )
)
# Eight samples a day, a little apart: the daily rules judge a day by its own spread, from 5 samples.
SAMPLE_HOURS = (1, 4, 7, 10, 13, 16, 19, 22)


@dataclass(frozen=True)
class DemoUser:
    id: uuid.UUID
    name: str
    persona: Persona

    @property
    def label(self) -> str:
        return f"{self.name} ({self.persona.role})"


def make_users(count: int) -> list[DemoUser]:
    """`count` users, the personas in turn (ana, ben, ..., ana2, ben2, ...)."""
    users = []
    for i in range(count):
        persona = PERSONAS[i % len(PERSONAS)]
        suffix = "" if i < len(PERSONAS) else str(i // len(PERSONAS) + 1)
        users.append(DemoUser(uuid.uuid4(), persona.name + suffix, persona))
    return users


async def seed_users(admin: asyncpg.Connection, users: Sequence[DemoUser]) -> None:
    """Auth users who consented, with every demo app allow-listed."""
    emails = [f"{u.name}.{str(u.id)[:8]}@example.invalid" for u in users]
    await admin.execute(Q["demo_seed_users"], [u.id for u in users], emails, list(APPS))


def week_start(now: datetime) -> datetime:
    """08:00 UTC six days ago: the first event time of the demo (today is the seventh day)."""
    day = (now - timedelta(days=WEEK - 1)).astimezone(UTC).date()
    return datetime(day.year, day.month, day.day, 8, tzinfo=UTC)


Event = tuple[uuid.UUID, datetime, str, str, str | None, int | None]


def events_for_tick(rng: random.Random, users: Sequence[DemoUser], tick: int, at: datetime) -> list[Event]:
    events: list[Event] = []
    for index, user in enumerate(users):
        when = at + timedelta(seconds=index)
        step = user.persona.steps[tick % len(user.persona.steps)]
        events.append((user.id, when, step.app, step.event_type, step.file_path, None))
        build = user.persona.build
        if build is not None:
            slower = build.slows_by if build.slows_at is not None and tick >= build.slows_at else 1.0
            for run in range(build.runs):
                duration = max(1, int(rng.gauss(build.median_ms, build.median_ms * 0.02) * slower))
                events.append(
                    (
                        user.id,
                        when + timedelta(seconds=5 + run),
                        "terminal",
                        "action_completed",
                        None,
                        duration,
                    )
                )
    return events


async def insert_metrics_day(admin: asyncpg.Connection, start: datetime, day: int, now: datetime) -> None:
    """The samples of one day of DAILY_METRICS (none later than `now`)."""
    base = start.replace(hour=0) + timedelta(days=day)
    rng = random.Random(day)
    for hour in SAMPLE_HOURS:
        ts = min(base + timedelta(hours=hour), now)
        for source, metric, value in DAILY_METRICS[day]:
            await admin.execute(
                Q["demo_insert_metric"], ts, source, {metric: round(value * rng.uniform(0.97, 1.03), 2)}
            )


async def feed(
    admin: asyncpg.Connection, users: Sequence[DemoUser], stopping: asyncio.Event, fed: list[int]
) -> None:
    """Insert each tick's rows (one statement, as a client would) until stopped; `fed[0]` counts them."""
    rng = random.Random(42)
    now = datetime.now(UTC)
    start = week_start(now)
    tick = 0
    while not stopping.is_set():
        now = datetime.now(UTC)
        at = min(start + timedelta(seconds=tick * EVENT_SECONDS_PER_TICK), now)
        rows = events_for_tick(rng, users, tick, at)
        await admin.execute(Q["demo_insert_events"], *(list(column) for column in zip(*rows, strict=True)))
        fed[0] += len(rows)
        if tick % TICKS_PER_METRICS_DAY == 0 and tick // TICKS_PER_METRICS_DAY < WEEK:
            await insert_metrics_day(admin, start, tick // TICKS_PER_METRICS_DAY, now)
        tick += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), timeout=TICK)
