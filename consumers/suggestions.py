"""Suggestion rows as the analyzers hand them to the one set-based upsert per batch."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from consumers.sql import Q
from floyo_pipeline.api import BatchContext


@dataclass(frozen=True)
class Suggestion:
    user_id: UUID
    suggestion_key: str
    trigger: str
    tools_involved: tuple[str, ...]
    suggested_integration: str
    sample_code: str
    reasoning: str
    actual_files: tuple[str, ...]
    confidence: float
    created_at: datetime
    """The time of the event that first triggered it (kept when the suggestion is updated)."""
    withdrawn_at: datetime | None = None
    """Set when the evidence behind a suggestion is gone (the time of the event that showed it)."""

    def as_json(self) -> dict[str, object]:
        return {
            "user_id": str(self.user_id),
            "suggestion_key": self.suggestion_key,
            "trigger": self.trigger,
            "tools_involved": list(self.tools_involved),
            "suggested_integration": self.suggested_integration,
            "sample_code": self.sample_code,
            "reasoning": self.reasoning,
            "actual_files": list(self.actual_files),
            "confidence": self.confidence,
            "created_at": self.created_at.isoformat(),
            "withdrawn_at": self.withdrawn_at.isoformat() if self.withdrawn_at else None,
        }


async def upsert_suggestions(ctx: BatchContext, suggestions: Sequence[Suggestion]) -> None:
    if suggestions:
        await ctx.execute(Q["suggestions_upsert"], [s.as_json() for s in suggestions])
