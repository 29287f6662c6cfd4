"""file_patterns: extension patterns, files accessed together, extension-based suggestions."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from consumers import settings
from consumers.catalog import INTEGRATIONS, integration_for
from consumers.outputs import PATTERNS, RELATIONSHIPS, SUGGESTIONS
from consumers.privacy import analyzable
from consumers.relationships import add_relationships
from consumers.sql import Q
from consumers.storable import storable
from consumers.suggestions import Suggestion, upsert_suggestions
from floyo_pipeline.api import BatchContext, Consumer, Subscription, Table, TelemetryEvent

FILE_EVENTS = frozenset({"file_created", "file_modified", "file_opened", "file_deleted"})
SEPARATOR = "\x1f"
CATALOG_EXTENSIONS = sorted(INTEGRATIONS)
STORED = ("file_path", "app_id")


def extension_of(path: str) -> str | None:
    """Lower-cased text after the last '.' of the file name (not of a folder); None without one."""
    name = path.replace("\\", "/").rsplit("/", 1)[-1]
    _, dot, ext = name.rpartition(".")
    return ext.lower() if dot and ext else None


@dataclass
class FileState:
    """A user's state across batches: the previous file event and recent paths per catalog extension."""

    last_path: str
    last_at: datetime
    recent_paths: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class PatternDelta:
    uses: int
    last_used: datetime
    tools: set[str]


@dataclass
class Together:
    weight: int
    last_seen: datetime


@dataclass
class FileEffects:
    """What one batch changes: increments for the outputs, the new state, the suggestions."""

    patterns: dict[tuple[UUID, str], PatternDelta] = field(default_factory=dict)
    together: dict[tuple[UUID, str, str], Together] = field(default_factory=dict)
    states: dict[UUID, FileState] = field(default_factory=dict)
    suggestions: list[Suggestion] = field(default_factory=list)


def _remember(recent: list[str], path: str) -> None:
    """Keep `recent` most recent first, distinct, at most ACTUAL_FILES_SHOWN (in place)."""
    if recent and recent[0] == path:
        return
    if path in recent:
        recent.remove(path)
    recent.insert(0, path)
    del recent[settings.ACTUAL_FILES_SHOWN :]


def suggestion_for(
    user_id: UUID, extension: str, count: int, recent: Sequence[str], created_at: datetime
) -> Suggestion | None:
    """The catalog suggestion for `count` uses of `extension`, or None below the threshold."""
    integration = integration_for(extension)
    if integration is None or count < settings.SUGGESTION_MIN_USES:
        return None
    return Suggestion(
        user_id=user_id,
        suggestion_key=f"file_extension:{extension}",
        trigger=f"file_extension:{extension}",
        tools_involved=integration.tools,
        suggested_integration=integration.name,
        sample_code=integration.sample,
        reasoning=integration.reasoning.format(count=count, extension=extension),
        actual_files=tuple(recent[: settings.ACTUAL_FILES_SHOWN]),
        confidence=min(count / settings.SUGGESTION_CONFIDENCE_DIVISOR, settings.SUGGESTION_CONFIDENCE_CAP),
        created_at=created_at,
    )


def analyze_files(
    rows: Iterable[TelemetryEvent],
    states: Mapping[UUID, FileState],
    counts: Mapping[tuple[UUID, str], int],
) -> FileEffects:
    """The batch's effects, from its analyzable file rows (in order), the users' state before it and the
    pattern counts of catalog extensions before it. Pure: same inputs, same effects."""
    fx = FileEffects()
    window = settings.ACCESSED_TOGETHER_WINDOW
    running: dict[tuple[UUID, str], int] = {}
    triggered_at: dict[tuple[UUID, str], datetime] = {}
    first_at: dict[tuple[UUID, str], datetime] = {}
    extensions: dict[str, str | None] = {}
    for row in rows:
        path = row.file_path
        if not path:
            continue
        user, at = row.user_id, row.occurred_at
        state = fx.states.get(user)
        if state is None:
            before = states.get(user)
            recent = {k: list(v) for k, v in before.recent_paths.items()} if before else {}
            state = FileState(before.last_path, before.last_at, recent) if before else None
        if state is not None and state.last_path != path and abs(at - state.last_at) < window:
            key3 = (user, state.last_path, path)
            link = fx.together.get(key3)
            if link is None:
                fx.together[key3] = Together(1, at)
            else:
                link.weight += 1
                link.last_seen = max(link.last_seen, at)
        if state is None:
            state = FileState(path, at)
        else:
            state.last_path, state.last_at = path, at
        fx.states[user] = state
        ext = extensions.get(path, "")
        if ext == "":
            ext = extensions[path] = extension_of(path)
        if ext is None:
            continue
        key = (user, ext)
        delta = fx.patterns.get(key)
        if delta is None:
            fx.patterns[key] = PatternDelta(1, at, {row.app_id})
        else:
            delta.uses += 1
            delta.last_used = max(delta.last_used, at)
            delta.tools.add(row.app_id)
        if ext in INTEGRATIONS:
            _remember(state.recent_paths.setdefault(ext, []), path)
            n = running.get(key, counts.get(key, 0)) + 1
            running[key] = n
            first_at.setdefault(key, at)
            if n == settings.SUGGESTION_MIN_USES:
                triggered_at[key] = at
    for key, n in running.items():
        user, ext = key
        made = suggestion_for(
            user, ext, n, fx.states[user].recent_paths[ext], triggered_at.get(key, first_at[key])
        )
        if made is not None:
            fx.suggestions.append(made)
    return fx


def _state_from(record: Any) -> FileState | None:
    if record["last_path"] is None:
        return None
    return FileState(record["last_path"], record["last_at"], dict(record["recent_paths"]))


class FilePatterns(Consumer):
    """Patterns per file extension, files accessed together, and catalog suggestions."""

    name = "file_patterns"
    tables = (
        PATTERNS,
        RELATIONSHIPS,
        SUGGESTIONS,
        Table(name="floyo_pipeline.file_pattern_state", user_column="user_id", age_column="last_at"),
    )

    def __init__(self) -> None:
        self.subscriptions = (Subscription("telemetry_events", FILE_EVENTS, handler=self._files),)

    async def _files(self, batch_rows: Sequence[TelemetryEvent], ctx: BatchContext) -> None:
        rows = storable(ctx, await analyzable(ctx, [r for r in batch_rows if r.file_path]), STORED)
        if not rows:
            return
        users = list(dict.fromkeys(r.user_id for r in rows))
        states: dict[UUID, FileState] = {}
        counts: dict[tuple[UUID, str], int] = {}
        for record in await ctx.fetch(Q["file_state_load"], users, CATALOG_EXTENSIONS):
            state = _state_from(record)
            if state is not None:
                states[record["user_id"]] = state
            if record["extensions"]:
                for ext, n in zip(record["extensions"], record["counts"], strict=True):
                    counts[(record["user_id"], ext)] = n
        fx = analyze_files(rows, states, counts)
        await self._write(ctx, fx)

    @staticmethod
    async def _write(ctx: BatchContext, fx: FileEffects) -> None:
        if fx.patterns:
            await ctx.execute(
                Q["patterns_add"],
                [k[0] for k in fx.patterns],
                [k[1] for k in fx.patterns],
                [d.uses for d in fx.patterns.values()],
                [d.last_used for d in fx.patterns.values()],
                [SEPARATOR.join(sorted(d.tools)) for d in fx.patterns.values()],
            )
        await add_relationships(ctx, fx.together, "accessed_together")
        await upsert_suggestions(ctx, fx.suggestions)
        await ctx.execute(
            Q["file_state_save"],
            list(fx.states),
            [s.last_path for s in fx.states.values()],
            [s.last_at for s in fx.states.values()],
            [s.recent_paths for s in fx.states.values()],
        )
