"""example_daily_counts: how many telemetry events each consenting user has per UTC day."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from uuid import UUID

from consumers import all_consumers
from consumers.privacy import analyzable
from floyo_pipeline.api import BatchContext, Consumer, Subscription, Table, TelemetryEvent, load_queries

Q = load_queries("tests.example_analyzer:daily_counts.sql")


@dataclass(frozen=True)
class Day:
    events: int
    last_at: datetime


def count_days(rows: Iterable[tuple[UUID, datetime]]) -> dict[tuple[UUID, date], Day]:
    """Events per (user, UTC day) of `rows` (user, occurred_at), with the day's latest event time."""
    days: dict[tuple[UUID, date], Day] = {}
    for user, at in rows:
        key = (user, at.astimezone(UTC).date())
        seen = days.get(key)
        days[key] = Day(1, at) if seen is None else Day(seen.events + 1, max(seen.last_at, at))
    return days


class DailyCounts(Consumer):
    """Counts every telemetry event that passes the privacy gate."""

    name = "example_daily_counts"
    tables = (Table(name="floyo_pipeline.example_daily_counts", user_column="user_id", age_column="last_at"),)

    def __init__(self) -> None:
        self.subscriptions = (Subscription("telemetry_events", handler=self._count),)

    async def _count(self, rows: Sequence[TelemetryEvent], ctx: BatchContext) -> None:
        days = count_days((r.user_id, r.occurred_at) for r in await analyzable(ctx, rows))
        if days:
            await ctx.execute(
                Q["example_daily_counts_add"],
                [k[0] for k in days],
                [k[1] for k in days],
                [d.events for d in days.values()],
                [d.last_at for d in days.values()],
            )


def with_defaults() -> list[Consumer]:
    """Factory for FLOYO_CONSUMERS=tests.example_analyzer.daily_counts:with_defaults."""
    return [*all_consumers(), DailyCounts()]
