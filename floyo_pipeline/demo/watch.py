"""What the demo shows, read from the database: new suggestions and insights, running counts, lag."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg

from floyo_pipeline.demo.feed import DemoUser
from floyo_pipeline.operations import status
from floyo_pipeline.queries import Q


@dataclass(frozen=True)
class Finding:
    """A suggestion or an insight, as a person would read it: who, what, why."""

    kind: str
    """"suggestion" or "insight"."""
    who: str
    what: str
    why: str
    level: str
    """A suggestion's confidence ("confidence 0.30"), an insight's severity."""


@dataclass
class Counts:
    fed: int = 0
    events: int = 0
    patterns: int = 0
    relationships: int = 0
    suggestions: int = 0
    user_insights: int = 0
    global_insights: int = 0
    lag_rows: int = 0
    lag_seconds: float = 0.0

    @property
    def insights(self) -> int:
        return self.user_insights + self.global_insights


@dataclass
class Watcher:
    """Polls the demo's rows; each `poll` returns what appeared since the last one."""

    conn: asyncpg.Connection
    users: Sequence[DemoUser]
    last_insight: int = 0
    """Insights up to this id are an earlier run's; the run's own have larger ids."""
    last_suggestion: int = 0
    counts: Counts = field(default_factory=Counts)

    def __post_init__(self) -> None:
        self._ids = [u.id for u in self.users]
        self._names = {u.id: u.label for u in self.users}
        self._first_insight = self.last_insight

    @classmethod
    async def start(cls, conn: asyncpg.Connection, users: Sequence[DemoUser]) -> Watcher:
        return cls(conn, users, last_insight=int(await conn.fetchval(Q["demo_last_insight_id"])))

    def _who(self, user_id: uuid.UUID | None) -> str:
        return "the team (global)" if user_id is None else self._names.get(user_id, str(user_id))

    async def poll(self, fed: int) -> list[Finding]:
        found: list[Finding] = []
        for r in await self.conn.fetch(Q["demo_new_suggestions"], self._ids, self.last_suggestion):
            self.last_suggestion = r["id"]
            found.append(
                Finding(
                    "suggestion",
                    self._who(r["user_id"]),
                    r["suggested_integration"],
                    r["reasoning"],
                    f"confidence {r['confidence']:.2f}",
                )
            )
        for r in await self.conn.fetch(Q["demo_new_insights"], self._ids, self.last_insight):
            self.last_insight = r["id"]
            found.append(Finding("insight", self._who(r["user_id"]), r["title"], r["body"], r["severity"]))
        row = await self.conn.fetchrow(Q["demo_counts"], self._ids, self._first_insight)
        assert row is not None
        doc = await status(self.conn)
        self.counts = Counts(
            fed=fed,
            lag_rows=max((c["lag_rows"] for c in doc["consumers"]), default=0),
            lag_seconds=max((c["lag_seconds"] for c in doc["consumers"]), default=0.0),
            **dict(row),
        )
        return found
