"""Insight rows as the analyzers hand them to the one set-based upsert per batch."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from consumers.sql import Q
from floyo_pipeline.api import BatchContext


@dataclass
class Insight:
    """One evaluation's verdict; the fingerprint makes it one row per (rule, subject)."""

    user_id: UUID | None
    kind: str
    severity: str
    status: str
    title: str
    body: str
    evidence: dict[str, Any]
    fingerprint: str
    first_seen: datetime
    last_seen: datetime

    def follows(self, earlier: Insight | None) -> Insight:
        """This verdict after `earlier` ones of the same batch: keep the first time, the latest time,
        and on resolution the severity it had while open."""
        if earlier is not None:
            self.first_seen = earlier.first_seen
            self.last_seen = max(earlier.last_seen, self.last_seen)
            if self.status == "resolved":
                self.severity = earlier.severity
        return self

    def as_json(self) -> dict[str, Any]:
        return {
            "user_id": None if self.user_id is None else str(self.user_id),
            "kind": self.kind,
            "severity": self.severity,
            "status": self.status,
            "title": self.title,
            "body": self.body,
            "evidence": self.evidence,
            "fingerprint": self.fingerprint,
            "first_seen": self.first_seen.isoformat(),
            "last_seen": self.last_seen.isoformat(),
        }


async def upsert_insights(ctx: BatchContext, insights: Iterable[Insight]) -> None:
    docs = [i.as_json() for i in insights]
    if docs:
        await ctx.execute(Q["insights_upsert"], docs)
