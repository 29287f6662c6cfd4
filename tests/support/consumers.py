"""Test consumers registered through the public API only (as a third party would)."""

from __future__ import annotations

import os
import uuid
from typing import Any

import asyncpg

from floyo_pipeline.api import Batch, BatchContext, Consumer, Subscription, TelemetryEvent
from tests.support.service import wait_until

EFFECTS_DDL = """
create table if not exists public.test_effects (
  consumer text not null,
  row_id bigint not null,
  user_id uuid not null,
  user_seq integer not null,
  app_id text not null,
  primary key (consumer, row_id)
);
create index if not exists test_effects_user_seq_idx on public.test_effects (consumer, user_id, user_seq);
create table if not exists public.test_cured (row_id bigint primary key);
grant select, insert, update, delete on public.test_effects, public.test_cured to floyo_pipeline_worker;
"""

RECORD_EFFECTS = """
insert into public.test_effects (consumer, row_id, user_id, user_seq, app_id)
select $1, r.row_id, r.user_id,
       coalesce((select e.user_seq from public.test_effects e
                 where e.consumer = $1 and e.user_id = r.user_id order by e.user_seq desc limit 1), 0)
       + row_number() over (partition by r.user_id order by r.ord),
       r.app_id
from unnest($2::bigint[], $3::uuid[], $4::text[]) with ordinality as r(row_id, user_id, app_id, ord)
"""


class PoisonError(Exception):
    """Raised for rows whose app_id is 'poison' until the row is listed in test_cured."""


class EffectRecorder(Consumer):
    """Writes one effect row per telemetry row with a per-user sequence number (checks order)."""

    def __init__(self, name: str = "recorder", event_types: frozenset[str] | None = None) -> None:
        self.name = name
        self.subscriptions = (Subscription("telemetry_events", event_types),)

    async def handle(self, batch: Batch[Any], ctx: BatchContext) -> None:
        rows: list[TelemetryEvent] = list(batch.rows)
        for row in rows:
            if row.app_id == "poison":
                cured = await ctx.fetchval("select 1 from public.test_cured where row_id = $1", row.id)
                if not cured:
                    raise PoisonError(f"row {row.id} is poison")
        await ctx.execute(
            RECORD_EFFECTS,
            self.name,
            [r.id for r in rows],
            [r.user_id for r in rows],
            [r.app_id for r in rows],
        )
        delay = float(os.environ.get("FLOYO_TEST_HANDLER_DELAY", "0"))
        if delay:
            import asyncio

            await asyncio.sleep(delay)


def recorders() -> list[Consumer]:
    """Factory for FLOYO_CONSUMERS=tests.support.consumers:recorders."""
    return [EffectRecorder("recorder")]


async def recorded_effects(conn: asyncpg.Connection, consumer: str = "recorder") -> list[tuple[Any, ...]]:
    """(row_id, user_id, user_seq) of each effect `consumer` recorded, by row id."""
    rows = await conn.fetch(
        "select row_id, user_id, user_seq from public.test_effects where consumer = $1 order by row_id",
        consumer,
    )
    return [tuple(r) for r in rows]


async def insert_poison(conn: asyncpg.Connection, user: uuid.UUID) -> int:
    """A telemetry row the recorder fails on (PoisonError) until it is listed in test_cured; its id."""
    return int(
        await conn.fetchval(
            "insert into public.telemetry_events (user_id, occurred_at, app_id, event_type)"
            " values ($1, now(), 'poison', 'app_focused') returning id",
            user,
        )
    )


async def count_effects(conn: asyncpg.Connection, consumer: str = "recorder") -> int:
    return int(await conn.fetchval("select count(*) from public.test_effects where consumer = $1", consumer))


async def wait_for_effects(
    conn: asyncpg.Connection, n: int, consumer: str = "recorder", timeout: float = 60
) -> None:
    async def enough() -> bool:
        return await count_effects(conn, consumer) >= n

    await wait_until(enough, timeout, what=f"{n} effects of {consumer}")


async def assert_exactly_once_in_order(conn: asyncpg.Connection, consumer: str, expected_rows: int) -> None:
    stats = await conn.fetchrow(
        """select count(*) as n, count(distinct row_id) as distinct_rows,
                  count(*) filter (where user_seq <> expected) as out_of_order
           from (select row_id, user_seq,
                        row_number() over (partition by user_id order by row_id) as expected
                 from public.test_effects where consumer = $1) s""",
        consumer,
    )
    assert stats is not None
    assert (stats["n"], stats["distinct_rows"], stats["out_of_order"]) == (expected_rows, expected_rows, 0)
