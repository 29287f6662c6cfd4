"""app_workflows: transitions between apps, and connector suggestions for switching habits."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol
from uuid import UUID

from consumers import settings
from consumers.catalog import CONNECTORS, connector_for
from consumers.habits import Habits, Verdict, pair_key
from consumers.outputs import RELATIONSHIPS, SUGGESTIONS
from consumers.privacy import analyzable
from consumers.relationships import add_relationships
from consumers.sql import Q
from consumers.storable import storable
from consumers.suggestions import Suggestion, upsert_suggestions
from floyo_pipeline.api import BatchContext, Consumer, Subscription, Table, TelemetryEvent

PREFIX = "app_transition:"
CONNECTOR_KEYS = [PREFIX + pair_key(source, target) for source, target in CONNECTORS]


class AppRow(Protocol):
    """What the rule reads of a telemetry row."""

    @property
    def user_id(self) -> UUID: ...
    @property
    def app_id(self) -> str: ...
    @property
    def occurred_at(self) -> datetime: ...


@dataclass
class AppState:
    """A user's previous analyzed event and switching habits."""

    last_app: str
    last_at: datetime
    habits: Habits = field(default_factory=Habits)


@dataclass
class Transition:
    weight: int
    last_seen: datetime


@dataclass
class Judged:
    """The latest judgement of a connector pair that is or was suggested in the batch."""

    verdict: Verdict
    suggested: bool
    at: datetime
    first_at: datetime


@dataclass
class AppEffects:
    transitions: dict[tuple[UUID, str, str], Transition] = field(default_factory=dict)
    states: dict[UUID, AppState] = field(default_factory=dict)
    suggestions: list[Suggestion] = field(default_factory=list)


def connector_suggestion(user_id: UUID, source: str, target: str, judged: Judged) -> Suggestion | None:
    """The connector suggestion row for a judged pair: live while `judged.suggested`, else withdrawn."""
    connector = connector_for(source, target)
    if connector is None:
        return None
    verdict = judged.verdict
    key = PREFIX + pair_key(source, target)
    return Suggestion(
        user_id=user_id,
        suggestion_key=key,
        trigger=key,
        tools_involved=(source, target),
        suggested_integration=connector.name,
        sample_code=connector.sample,
        reasoning=connector.reasoning.format(
            share=f"{verdict.share:.0%}", lift=f"{verdict.lift:.1f}", source=source, target=target
        ),
        actual_files=(),
        confidence=verdict.confidence,
        created_at=judged.first_at,
        withdrawn_at=None if judged.suggested else judged.at,
    )


def analyze_apps(
    rows: Iterable[AppRow],
    states: Mapping[UUID, AppState],
    live: Set[tuple[UUID, str, str]],
) -> AppEffects:
    """The batch's effects from its analyzable rows (in order), the users' state before it and the
    connector pairs whose suggestion is live (neither withdrawn nor dismissed) before it. Pure: the
    inputs are not changed."""
    fx = AppEffects()
    window = settings.APP_TRANSITION_WINDOW
    shown = set(live)
    judged: dict[tuple[UUID, str, str], Judged] = {}
    for row in rows:
        user, app, at = row.user_id, row.app_id, row.occurred_at
        state = fx.states.get(user)
        if state is None:
            before = states.get(user)
            if before is None:
                fx.states[user] = AppState(app, at)
                continue
            state = fx.states[user] = AppState(before.last_app, before.last_at, before.habits.copy())
        source = state.last_app
        if source != app and abs(at - state.last_at) < window:
            key = (user, source, app)
            move = fx.transitions.get(key)
            if move is None:
                fx.transitions[key] = Transition(1, at)
            else:
                move.weight += 1
                move.last_seen = max(move.last_seen, at)
            habits = state.habits
            habits.record(source, app, at, (source, app) in CONNECTORS)
            for a, b in CONNECTORS:
                pair = (user, a, b)
                was = pair in shown
                if not was and pair_key(a, b) not in habits.pairs:
                    continue
                verdict = habits.judge(a, b)
                now = verdict.suggests(was)
                if was or now:
                    earlier = judged.get(pair)
                    judged[pair] = Judged(verdict, now, at, earlier.first_at if earlier else at)
                if now:
                    shown.add(pair)
                else:
                    shown.discard(pair)
        state.last_app, state.last_at = app, at
    for (user, a, b), latest in judged.items():
        made = connector_suggestion(user, a, b, latest)
        if made is not None:
            fx.suggestions.append(made)
    return fx


class AppWorkflows(Consumer):
    """App-to-app transitions and connector suggestions."""

    name = "app_workflows"
    tables = (
        RELATIONSHIPS,
        SUGGESTIONS,
        Table(name="floyo_pipeline.app_workflow_state", user_column="user_id", age_column="last_at"),
    )

    def __init__(self) -> None:
        self.subscriptions = (Subscription("telemetry_events", handler=self._apps),)

    async def _apps(self, batch_rows: Sequence[TelemetryEvent], ctx: BatchContext) -> None:
        rows = storable(ctx, await analyzable(ctx, batch_rows), ("app_id",))
        if not rows:
            return
        users = list(dict.fromkeys(r.user_id for r in rows))
        states: dict[UUID, AppState] = {}
        live: set[tuple[UUID, str, str]] = set()
        for record in await ctx.fetch(Q["app_state_load"], users, CONNECTOR_KEYS):
            user = record["user_id"]
            if record["last_app"] is not None:
                habits = Habits.from_json(record["habit_at"], record["habits"])
                states[user] = AppState(record["last_app"], record["last_at"], habits)
            for key in record["live"] or ():
                source, target = key.removeprefix(PREFIX).split("->", 1)
                live.add((user, source, target))
        fx = analyze_apps(rows, states, live)
        await add_relationships(ctx, fx.transitions, "app_transition")
        await upsert_suggestions(ctx, fx.suggestions)
        await ctx.execute(
            Q["app_state_save"],
            list(fx.states),
            [s.last_app for s in fx.states.values()],
            [s.last_at for s in fx.states.values()],
            [s.habits.at for s in fx.states.values()],
            [s.habits.as_json() for s in fx.states.values()],
        )
