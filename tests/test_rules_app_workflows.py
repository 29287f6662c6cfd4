"""app_workflows rules on real Postgres through the running engine: exact output rows."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import asyncpg

from consumers.catalog import CONNECTORS
from tests.analyzer_support import T0, Ev, consenting_users, insert_rows, process, table_rows
from tests.pg import TestDatabase


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def habit(user: uuid.UUID, times: int, source: str = "vscode", target: str = "slack") -> list[Ev]:
    """`times` source->target transitions 60 s apart; the way back takes 9 minutes (no transition)."""
    rows: list[Ev] = []
    for i in range(times):
        start = 1000 * i
        rows += [Ev(user, start, app=source, event_type="app_focused")]
        rows += [Ev(user, start + 60, app=target, event_type="app_focused")]
    return rows


async def transitions(admin: asyncpg.Connection) -> set[tuple[object, str, str, int, datetime]]:
    return {
        (r["user_id"], r["source"], r["target"], r["weight"], r["last_seen"])
        for r in await table_rows(admin, "relationships")
        if r["relation_type"] == "app_transition"
    }


async def test_transition_under_five_minutes_between_different_apps(
    database: TestDatabase, admin: asyncpg.Connection
) -> None:
    [u] = await consenting_users(admin, 1)
    await insert_rows(
        admin,
        [
            Ev(u, 0, app="vscode", event_type="app_focused"),
            Ev(u, 299, app="slack", event_type="app_focused"),  # 299 s: transition
            Ev(u, 599, app="vscode", event_type="app_focused"),  # 300 s: none
            Ev(u, 600, app="vscode", event_type="file_opened", path="/a.py"),  # same app: none
            Ev(u, 610, app="excel", event_type="action_completed", duration=5),  # any event type counts
            Ev(u, 620, app="vscode", event_type="app_focused"),
            Ev(u, 630, app="excel", event_type="app_focused"),
        ],
    )
    await process(database, admin, batch_size=2)
    assert await transitions(admin) == {
        (u, "vscode", "slack", 1, at(299)),
        (u, "vscode", "excel", 2, at(630)),
        (u, "excel", "vscode", 1, at(620)),
    }


async def test_connector_suggestion_when_weight_reaches_five(
    database: TestDatabase, admin: asyncpg.Connection
) -> None:
    four, five, six, unknown = await consenting_users(admin, 4)
    rows = habit(four, 4) + habit(five, 5) + habit(six, 6) + habit(unknown, 7, "excel", "figma")
    await insert_rows(admin, rows)
    await process(database, admin, batch_size=3)
    assert await transitions(admin) == {
        (four, "vscode", "slack", 4, at(3060)),
        (five, "vscode", "slack", 5, at(4060)),
        (six, "vscode", "slack", 6, at(5060)),
        (unknown, "excel", "figma", 7, at(6060)),
    }
    got = {r["user_id"]: r for r in await table_rows(admin, "suggestions")}
    assert set(got) == {five, six}
    connector = CONNECTORS[("vscode", "slack")]
    assert got[five] == {
        "user_id": five,
        "suggestion_key": "app_transition:vscode->slack",
        "trigger": "app_transition:vscode->slack",
        "tools_involved": ["vscode", "slack"],
        "suggested_integration": connector.name,
        "sample_code": connector.sample,
        "reasoning": connector.reasoning.format(weight=5, source="vscode", target="slack"),
        "actual_files": [],
        "confidence": 0.5,
        "is_dismissed": False,
        "is_applied": False,
        "created_at": at(4060),
        "viewed_at": None,
    }
    assert (got[six]["confidence"], got[six]["created_at"]) == (0.6, at(4060))
