"""performance: duration regressions per user from telemetry, daily rules from metrics_log."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from consumers.durations import DurationState, SeriesKey, analyze_durations
from consumers.insights import upsert_insights
from consumers.metric_rules import Daily, DayKey, analyze_metrics, needed_days
from consumers.outputs import INSIGHTS
from consumers.privacy import analyzable
from consumers.sql import Q
from consumers.storable import storable
from floyo_pipeline.api import BatchContext, Consumer, MetricsLogEntry, Subscription, Table, TelemetryEvent


def _log_sums(row: Mapping[str, Any]) -> tuple[int, int, int, int]:
    return (
        row["baseline_log_sum"],
        row["baseline_log_squares"],
        row["recent_log_sum"],
        row["recent_log_squares"],
    )


class Performance(Consumer):
    """Reads both streams: telemetry durations (behind the privacy gate) and metrics_log."""

    name = "performance"
    tables = (
        INSIGHTS,
        Table(name="floyo_pipeline.duration_windows", user_column="user_id", age_column="last_at"),
        Table(name="floyo_pipeline.metric_daily", user_column=None, age_column=None),
    )

    def __init__(self) -> None:
        self.subscriptions = (
            Subscription("telemetry_events", handler=self._durations),
            Subscription("metrics_log", handler=self._metrics),
        )

    async def _durations(self, batch_rows: Sequence[TelemetryEvent], ctx: BatchContext) -> None:
        gated = await analyzable(ctx, [r for r in batch_rows if r.duration_ms is not None])
        rows = storable(ctx, gated, ("app_id", "event_type"))
        if not rows:
            return
        keys = list(dict.fromkeys((r.user_id, r.app_id, r.event_type) for r in rows))
        stored: dict[SeriesKey, DurationState] = {
            (r["user_id"], r["app_id"], r["event_type"]): DurationState(
                r["durations"],
                r["baseline_runs"],
                r["regression_open"],
                # Rows from before the sums were kept have none: the rule sums their durations.
                log_sums=None if r["baseline_log_sum"] is None else _log_sums(r),
            )
            for r in await ctx.fetch(
                Q["duration_windows_load"],
                [k[0] for k in keys],
                [k[1] for k in keys],
                [k[2] for k in keys],
            )
        }
        fx = analyze_durations(
            ((r.user_id, r.app_id, r.event_type, r.duration_ms or 0, r.occurred_at) for r in rows), stored
        )
        states = fx.states
        users: list[UUID] = [k[0] for k in states]
        sums = [s.log_sums for s in states.values()]
        await ctx.execute(
            Q["duration_windows_save"],
            users,
            [k[1] for k in states],
            [k[2] for k in states],
            [",".join(map(str, s.durations)) for s in states.values()],
            [s.baseline_runs for s in states.values()],
            [s.regression_open for s in states.values()],
            [s.last_at for s in states.values()],
            *([None if x is None else x[i] for x in sums] for i in range(4)),
        )
        await upsert_insights(ctx, fx.insights.values())

    async def _metrics(self, batch_rows: Sequence[MetricsLogEntry], ctx: BatchContext) -> None:
        entries = [(r.ts, r.source, r.metric) for r in batch_rows]
        needed = sorted(needed_days(entries))
        if not needed:
            return
        stored: dict[DayKey, Daily] = {
            (r["source"], r["metric"], r["day"]): Daily(r["total"], r["samples"], r["m2"], r["alert_open"])
            for r in await ctx.fetch(
                Q["metric_daily_load"],
                [k[0] for k in needed],
                [k[1] for k in needed],
                [k[2] for k in needed],
            )
        }
        fx = analyze_metrics(entries, stored)
        touched = sorted(fx.touched)
        days = [fx.days[k] for k in touched]
        await ctx.execute(
            Q["metric_daily_save"],
            [k[0] for k in touched],
            [k[1] for k in touched],
            [k[2] for k in touched],
            [d.total for d in days],
            [d.samples for d in days],
            [d.m2 for d in days],
            [d.alert_open for d in days],
        )
        await upsert_insights(ctx, fx.insights.values())
