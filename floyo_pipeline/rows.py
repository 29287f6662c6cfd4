"""Pydantic row models of the streams, outputs and privacy tables.

The single source of truth for the shape of the public tables: the engine validates stream rows with
them, and `validate-schema` derives the expected columns and types from them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field


class TableRow(BaseModel):
    """A row of a public table; `__table__` names it and `__pg_types__` overrides inferred types."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    __table__: ClassVar[str]
    __pg_types__: ClassVar[dict[str, str]] = {}
    # Columns the table has but the model does not carry (all NOT NULL): name -> Postgres type.
    __db_only_columns__: ClassVar[dict[str, str]] = {}
    # Fields the engine computes when it reads a row, which the table does not store.
    __computed_fields__: ClassVar[frozenset[str]] = frozenset()


class StreamRow(TableRow):
    """A row of a stream, read in (pipeline_txid, id) order; its partition is computed on read."""

    __db_only_columns__ = {"pipeline_txid": "xid8"}
    __computed_fields__ = frozenset({"pipeline_partition"})

    id: int
    pipeline_partition: int = Field(ge=0)


class TelemetryEvent(StreamRow):
    __table__ = "telemetry_events"
    __pg_types__ = {"duration_ms": "integer", "pipeline_txid": "xid8"}

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

    ts: datetime
    source: str
    metric: dict[str, Any]
    created_at: datetime


STREAM_MODELS: dict[str, type[StreamRow]] = {
    TelemetryEvent.__table__: TelemetryEvent,
    MetricsLogEntry.__table__: MetricsLogEntry,
}


class PrivacyPrefs(TableRow):
    __table__ = "privacy_prefs"
    __pg_types__ = {"data_retention_days": "integer"}

    user_id: UUID
    consent_given: bool = False
    monitoring_enabled: bool = True
    data_retention_days: int = Field(default=14, ge=1, le=3650)
    updated_at: datetime


class AppAllowlistEntry(TableRow):
    __table__ = "app_allowlist"

    user_id: UUID
    app_id: str = Field(min_length=1)
    enabled: bool = True
    scope: Literal["metadata_only", "metadata_plus_usage", "none"] = "metadata_only"
    updated_at: datetime


class SignalToggle(TableRow):
    __table__ = "signal_toggles"

    user_id: UUID
    signal_key: str = Field(min_length=1)
    enabled: bool = True
    updated_at: datetime


class Pattern(TableRow):
    __table__ = "patterns"
    __pg_types__ = {"count": "integer"}

    id: int
    user_id: UUID
    file_extension: str = Field(min_length=1)
    count: int = Field(default=0, ge=0)
    last_used: datetime
    tools: list[str] = Field(default_factory=list)


class Relationship(TableRow):
    __table__ = "relationships"
    __pg_types__ = {"weight": "integer"}

    id: int
    user_id: UUID
    source: str
    target: str
    relation_type: Literal["accessed_together", "app_transition"]
    weight: int = Field(default=0, ge=0)
    last_seen: datetime


class Insight(TableRow):
    __table__ = "insights"

    id: int
    user_id: UUID | None = None
    kind: str = Field(min_length=1)
    severity: Literal["info", "warning", "critical"]
    status: Literal["open", "resolved"] = "open"
    title: str
    body: str
    evidence: dict[str, Any] = Field(default_factory=dict)
    fingerprint: str
    first_seen: datetime
    last_seen: datetime


class Suggestion(TableRow):
    __table__ = "suggestions"

    id: int
    user_id: UUID
    suggestion_key: str
    trigger: str
    tools_involved: list[str] = Field(default_factory=list)
    suggested_integration: str
    sample_code: str = ""
    reasoning: str
    actual_files: list[str] = Field(default_factory=list)
    confidence: float = Field(ge=0, le=1)
    is_dismissed: bool = False
    is_applied: bool = False
    created_at: datetime
    viewed_at: datetime | None = None
    withdrawn_at: datetime | None = None
    """Set by the pipeline when the evidence behind the suggestion is gone (a faded habit)."""


PRIVACY_MODELS: tuple[type[TableRow], ...] = (PrivacyPrefs, AppAllowlistEntry, SignalToggle)
OUTPUT_MODELS: tuple[type[TableRow], ...] = (Pattern, Relationship, Insight, Suggestion)

# Every public table the migrations create, by name: what `validate-schema` expects to find.
TABLE_MODELS: dict[str, type[TableRow]] = {
    model.__table__: model for model in (*STREAM_MODELS.values(), *PRIVACY_MODELS, *OUTPUT_MODELS)
}
