"""app_workflows: transitions between apps, and connector suggestions for known pairs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from consumers import settings
from consumers.catalog import CONNECTORS, connector_for
from consumers.privacy import analyzable
from consumers.sql import Q
from consumers.storable import storable
from consumers.suggestions import Suggestion, upsert_suggestions
from floyo_pipeline.api import Batch, BatchContext, Consumer, Subscription, TelemetryEvent

KNOWN_SOURCES = [source for source, _ in CONNECTORS]
KNOWN_TARGETS = [target for _, target in CONNECTORS]


@dataclass
class AppState:
    """A user's previous analyzed event."""

    last_app: str
    last_at: datetime


@dataclass
class Transition:
    weight: int
    last_seen: datetime


@dataclass
class AppEffects:
    transitions: dict[tuple[UUID, str, str], Transition] = field(default_factory=dict)
    states: dict[UUID, AppState] = field(default_factory=dict)
    suggestions: list[Suggestion] = field(default_factory=list)


def connector_suggestion(
    user_id: UUID, source: str, target: str, weight: int, created_at: datetime
) -> Suggestion | None:
    """The connector suggestion for a pair with `weight` transitions, or None below the threshold."""
    connector = connector_for(source, target)
    if connector is None or weight < settings.CONNECTOR_MIN_WEIGHT:
        return None
    return Suggestion(
        user_id=user_id,
        suggestion_key=f"app_transition:{source}->{target}",
        trigger=f"app_transition:{source}->{target}",
        tools_involved=(source, target),
        suggested_integration=connector.name,
        sample_code=connector.sample,
        reasoning=connector.reasoning.format(weight=weight, source=source, target=target),
        actual_files=(),
        confidence=min(weight / settings.SUGGESTION_CONFIDENCE_DIVISOR, settings.SUGGESTION_CONFIDENCE_CAP),
        created_at=created_at,
    )


def analyze_apps(
    rows: Iterable[TelemetryEvent],
    states: Mapping[UUID, AppState],
    weights: Mapping[tuple[UUID, str, str], int],
) -> AppEffects:
    """The batch's effects from its analyzable rows (in order), the users' previous events and the
    current weights of known connector pairs. Pure."""
    fx = AppEffects()
    window = settings.APP_TRANSITION_WINDOW
    running: dict[tuple[UUID, str, str], int] = {}
    reached_at: dict[tuple[UUID, str, str], datetime] = {}
    first_at: dict[tuple[UUID, str, str], datetime] = {}
    for row in rows:
        user, app, at = row.user_id, row.app_id, row.occurred_at
        state = fx.states.get(user)
        if state is None:
            before = states.get(user)
            state = AppState(before.last_app, before.last_at) if before else None
        if state is None:
            fx.states[user] = AppState(app, at)
            continue
        if state.last_app != app and abs(at - state.last_at) < window:
            key = (user, state.last_app, app)
            move = fx.transitions.get(key)
            if move is None:
                fx.transitions[key] = Transition(1, at)
            else:
                move.weight += 1
                move.last_seen = max(move.last_seen, at)
            if (state.last_app, app) in CONNECTORS:
                n = running.get(key, weights.get(key, 0)) + 1
                running[key] = n
                first_at.setdefault(key, at)
                if n == settings.CONNECTOR_MIN_WEIGHT:
                    reached_at[key] = at
        state.last_app, state.last_at = app, at
        fx.states[user] = state
    for key, n in running.items():
        made = connector_suggestion(*key, n, reached_at.get(key, first_at[key]))
        if made is not None:
            fx.suggestions.append(made)
    return fx


class AppWorkflows(Consumer):
    """App-to-app transitions and connector suggestions."""

    name = "app_workflows"
    subscriptions = (Subscription("telemetry_events"),)

    async def handle(self, batch: Batch[Any], ctx: BatchContext) -> None:
        rows = storable(ctx, await analyzable(ctx, batch.rows), ("app_id",))
        if not rows:
            return
        users = list(dict.fromkeys(r.user_id for r in rows))
        states: dict[UUID, AppState] = {}
        weights: dict[tuple[UUID, str, str], int] = {}
        for record in await ctx.fetch(Q["app_state_load"], users, KNOWN_SOURCES, KNOWN_TARGETS):
            user = record["user_id"]
            if record["last_app"] is not None:
                states[user] = AppState(record["last_app"], record["last_at"])
            if record["sources"]:
                for source, target, weight in zip(
                    record["sources"], record["targets"], record["weights"], strict=True
                ):
                    weights[(user, source, target)] = weight
        fx = analyze_apps(rows, states, weights)
        if fx.transitions:
            await ctx.execute(
                Q["relationships_add"],
                [k[0] for k in fx.transitions],
                [k[1] for k in fx.transitions],
                [k[2] for k in fx.transitions],
                [t.weight for t in fx.transitions.values()],
                [t.last_seen for t in fx.transitions.values()],
                "app_transition",
            )
        await upsert_suggestions(ctx, fx.suggestions)
        await ctx.execute(
            Q["app_state_save"],
            list(fx.states),
            [s.last_app for s in fx.states.values()],
            [s.last_at for s in fx.states.values()],
        )
