"""Helpers for the analyzer tests: consenting users, explicit telemetry rows, run-until-caught-up,
and snapshots of what the consumers store (the tables they declare) to compare."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from consumers import all_consumers
from floyo_pipeline.api import Consumer, Table
from floyo_pipeline.operations import replay, status
from floyo_pipeline.storage import declared_tables
from tests.support.pg import TestDatabase
from tests.support.service import make_users, running_service, wait_until

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
APPS = ("vscode", "slack", "excel", "outlook", "figma", "jira", "terminal", "chrome")


@dataclass(frozen=True)
class Ev:
    """A telemetry row to insert; `at` is seconds after T0 (or a datetime)."""

    user: uuid.UUID
    at: float | datetime
    app: str = "vscode"
    event_type: str = "file_opened"
    path: str | None = None
    duration: int | None = None

    @property
    def occurred_at(self) -> datetime:
        return self.at if isinstance(self.at, datetime) else T0 + timedelta(seconds=self.at)


async def consenting_users(
    admin: asyncpg.Connection,
    n: int,
    apps: Sequence[str] = APPS,
    retention_days: int = 14,
) -> list[uuid.UUID]:
    """`n` users who consented, monitor, and allow-list `apps` (scope metadata_plus_usage)."""
    users = await make_users(admin, n)
    await admin.execute(
        """insert into public.privacy_prefs (user_id, consent_given, monitoring_enabled, data_retention_days)
           select u, true, true, $2 from unnest($1::uuid[]) u""",
        users,
        retention_days,
    )
    await admin.execute(
        """insert into public.app_allowlist (user_id, app_id, enabled, scope)
           select u, a, true, 'metadata_plus_usage' from unnest($1::uuid[]) u, unnest($2::text[]) a""",
        users,
        list(apps),
    )
    return users


async def insert_rows(admin: asyncpg.Connection, events: Iterable[Ev]) -> int:
    """Insert rows in the given order (ids ascending, one transaction)."""
    rows = list(events)
    await admin.execute(
        """insert into public.telemetry_events
             (user_id, occurred_at, app_id, event_type, file_path, duration_ms)
           select r.u, r.at, r.app, r.et, r.path, r.dur
           from unnest($1::uuid[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::int[])
             with ordinality as r(u, at, app, et, path, dur, ord)
           order by r.ord""",
        [r.user for r in rows],
        [r.occurred_at for r in rows],
        [r.app for r in rows],
        [r.event_type for r in rows],
        [r.path for r in rows],
        [r.duration for r in rows],
    )
    return len(rows)


async def insert_metrics(
    admin: asyncpg.Connection, entries: Iterable[tuple[datetime, str, dict[str, Any]]]
) -> None:
    """Insert metrics_log rows (ts, source, metric) in the given order."""
    rows = list(entries)
    await admin.execute(
        """insert into public.metrics_log (ts, source, metric)
           select r.ts, r.source, r.metric
           from unnest($1::timestamptz[], $2::text[], $3::jsonb[])
             with ordinality as r(ts, source, metric, ord)
           order by r.ord""",
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
    )


async def process(
    database: TestDatabase,
    admin: asyncpg.Connection,
    consumers: Sequence[Consumer] | None = None,
    batch_size: int = 500,
    timeout: float = 60.0,
) -> None:
    """Run the service until every consumer has no lag on any of its streams, then stop it."""
    chosen = list(consumers) if consumers is not None else all_consumers()
    expected = {(c.name, s.stream) for c in chosen for s in c.subscriptions}

    async def caught_up() -> bool:
        doc = await status(admin)
        lag = {(c["consumer"], c["stream"]): c["lag_rows"] for c in doc["consumers"]}
        return all(lag.get(k) == 0 for k in expected)

    async with running_service(database.service_url, chosen, batch_size=batch_size):
        await wait_until(caught_up, timeout=timeout, what="consumers caught up")


def output_tables(consumers: Sequence[Consumer] | None = None) -> tuple[Table, ...]:
    """The app-facing tables the consumers (default: all_consumers()) declare."""
    chosen = all_consumers() if consumers is None else consumers
    return tuple(t for t in declared_tables(chosen) if t.schema == "public")


def state_tables(consumers: Sequence[Consumer] | None = None) -> tuple[Table, ...]:
    """The consumers' own state: the tables they declare in the private schema."""
    chosen = all_consumers() if consumers is None else consumers
    return tuple(t for t in declared_tables(chosen) if t.schema != "public")


async def table_rows(admin: asyncpg.Connection, table: str) -> list[dict[str, Any]]:
    """Every row of an output table without its surrogate id, in a stable order."""
    rows = [dict(r) for r in await admin.fetch(f"select * from public.{table}")]
    for r in rows:
        r.pop("id", None)
    return sorted(rows, key=lambda r: repr(sorted(r.items())))


async def snapshot(
    admin: asyncpg.Connection, consumers: Sequence[Consumer] | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Every output table's rows (`table_rows`), by the table's name without the schema."""
    return {t.bare_name: await table_rows(admin, t.bare_name) for t in output_tables(consumers)}


async def state_snapshot(
    admin: asyncpg.Connection, consumers: Sequence[Consumer] | None = None
) -> dict[str, list[tuple[object, ...]]]:
    """Every state table's rows, by the table's schema-qualified name, in a stable order."""
    return {
        t.name: sorted((tuple(r) for r in await admin.fetch(f"select * from {t.name}")), key=repr)
        for t in state_tables(consumers)
    }


async def users_stored(admin: asyncpg.Connection, consumers: Sequence[Consumer] | None = None) -> set[object]:
    """Every user that a table the consumers declare with a user column holds a row of."""
    chosen = all_consumers() if consumers is None else consumers
    found: set[object] = set()
    for t in declared_tables(chosen):
        if t.user_column is not None:
            found |= {r[0] for r in await admin.fetch(f"select distinct {t.user_column} from {t.name}")}
    return found


async def reset_outputs(admin: asyncpg.Connection, consumers: Sequence[Consumer] | None = None) -> None:
    """Empty every table the consumers declare and move their checkpoints back to the start."""
    chosen = all_consumers() if consumers is None else consumers
    await admin.execute(f"truncate {', '.join(t.name for t in declared_tables(chosen))}")
    for consumer in chosen:
        await replay(admin, consumer.name, None, force=False)


async def dead_letters(admin: asyncpg.Connection) -> list[asyncpg.Record]:
    return list(await admin.fetch("select * from floyo_pipeline.dead_letters"))
