"""Pydantic row models of the streams, outputs and privacy tables.

The single source of truth for the shape of the public tables: the engine validates stream rows with
them, and `validate-schema` derives the expected columns and types from them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field


class TableRow(BaseModel):
    """A row of a public table; `__table__` names it and `__pg_types__` overrides inferred types."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    __table__: ClassVar[str]
    __pg_types__: ClassVar[dict[str, str]] = {}


class StreamRow(TableRow):
    """A row of a stream; the engine orders rows by (pipeline_txid, id) within a partition."""

    id: int
    pipeline_partition: int = Field(ge=0)


class TelemetryEvent(StreamRow):
    __table__ = "telemetry_events"
    __pg_types__ = {"pipeline_partition": "smallint", "duration_ms": "integer", "pipeline_txid": "xid8"}

    user_id: UUID
    occurred_at: datetime
    app_id: str = Field(min_length=1)
    event_type: str = Field(min_length=1)
    file_path: str | None = None
    duration_ms: int | None = Field(default=None, ge=0)
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime


class MetricsLogEntry(StreamRow):
    __table__ = "metrics_log"
    __pg_types__ = {"pipeline_partition": "smallint"}

    ts: datetime
    source: str
    metric: dict[str, Any]
    created_at: datetime


STREAM_MODELS: dict[str, type[StreamRow]] = {
    TelemetryEvent.__table__: TelemetryEvent,
    MetricsLogEntry.__table__: MetricsLogEntry,
}
