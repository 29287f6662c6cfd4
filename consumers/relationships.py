"""Relationship increments as the analyzers hand them to the one set-based add per batch."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Protocol
from uuid import UUID

from consumers.sql import Q
from floyo_pipeline.api import BatchContext


class Link(Protocol):
    """What a batch saw of one (user, source, target) relationship: how often, and when last."""

    weight: int
    last_seen: datetime


async def add_relationships(
    ctx: BatchContext, links: Mapping[tuple[UUID, str, str], Link], relation_type: str
) -> None:
    """Add each link's weight to its relationship row of `relation_type` and keep the latest time."""
    if links:
        await ctx.execute(
            Q["relationships_add"],
            [k[0] for k in links],
            [k[1] for k in links],
            [k[2] for k in links],
            [t.weight for t in links.values()],
            [t.last_seen for t in links.values()],
            relation_type,
        )
