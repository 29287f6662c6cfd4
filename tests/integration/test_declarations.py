"""Declared once: each stream's queries come from one template, each consumer's tables and handlers
from its own declarations, checked when the consumers are built."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from consumers import all_consumers
from floyo_pipeline.api import Batch, BatchContext, Consumer, Subscription, Table
from floyo_pipeline.composition import CompositionError, check_declarations
from floyo_pipeline.engine.streams import QUERY_NAMES, STREAMS
from floyo_pipeline.retention import retention_query, retention_tables
from floyo_pipeline.storage import declared_tables


async def test_every_stream_has_every_query_of_the_template(admin: asyncpg.Connection) -> None:
    assert set(STREAMS) == {"telemetry_events", "metrics_log"}
    for stream in STREAMS.values():
        assert set(QUERY_NAMES) <= set(stream.queries), stream.name
        for name, sql in stream.queries.items():
            assert f"public.{stream.name}" in sql, name
            await admin.prepare(sql)  # the rendered SQL is valid against the migrated schema


async def test_every_retention_query_is_valid_sql(admin: asyncpg.Connection) -> None:
    tables = retention_tables(all_consumers())
    assert [t.name for t in tables][:2] == ["public.telemetry_events", "public.patterns"]
    for table in tables:
        for verb in ("count", "delete"):
            await admin.prepare(retention_query(table, verb))


def test_shared_outputs_are_declared_by_each_writer_and_counted_once() -> None:
    consumers = all_consumers()
    writers = {c.name for c in consumers if any(t.name == "public.relationships" for t in c.tables)}
    assert writers == {"file_patterns", "app_workflows"}
    names = [t.name for t in declared_tables(consumers)]
    assert len(names) == len(set(names))
    assert set(names) == {
        "public.patterns",
        "public.relationships",
        "public.suggestions",
        "public.insights",
        "floyo_pipeline.file_pattern_state",
        "floyo_pipeline.app_workflow_state",
        "floyo_pipeline.duration_windows",
        "floyo_pipeline.metric_daily",
    }


class Declared(Consumer):
    def __init__(self, name: str, tables: tuple[Table, ...], handler: bool = True) -> None:
        self.name = name
        self.tables = tables
        self.subscriptions = (Subscription("telemetry_events", handler=self._rows if handler else None),)

    async def _rows(self, rows: Any, ctx: BatchContext) -> None:
        ctx.count("seen", len(rows))


def test_declarations_the_engine_cannot_serve_are_refused() -> None:
    aged = Table(name="public.relationships", user_column="user_id", age_column="last_seen")
    kept = Table(name="public.relationships", user_column="user_id", age_column=None)
    with pytest.raises(CompositionError, match=r"declares .*relationships.* unlike"):
        check_declarations([Declared("a", (aged,)), Declared("b", (kept,))])
    with pytest.raises(CompositionError, match="consumer c: no handler for stream telemetry_events"):
        check_declarations([Declared("c", (), handler=False)])
    check_declarations([Declared("a", (aged,)), Declared("b", (aged,))])
    for name in ("relationships", "auth.users", "public.Users", "public.x; drop table y"):
        with pytest.raises(ValueError, match="expected one of public, floyo_pipeline"):
            Table(name=name, user_column=None, age_column=None)
    with pytest.raises(ValueError, match="not a plain column name"):
        Table(name="public.x", user_column="user_id", age_column="now()")


async def test_the_default_handle_gives_each_stream_its_handler(admin: asyncpg.Connection) -> None:
    consumer = Declared("d", ())
    ctx = BatchContext(admin)
    await consumer.handle(Batch("d", "telemetry_events", (0,), [object(), object()]), ctx)
    assert ctx.outcomes == {"seen": 2}
    with pytest.raises(TypeError, match="consumer d: no handler for stream metrics_log"):
        await consumer.handle(Batch("d", "metrics_log", (0,), []), ctx)
