"""The privacy gate in front of every telemetry analyzer (docs/analyzers.md; G9 in docs/guarantees.md).

A row is analyzed only if its user gave consent and left monitoring on, its app is allow-listed,
enabled and not scoped `none`, and its event type is not switched off. Settings are read once per
batch, inside the batch's transaction, so a change applies to every row processed after it commits.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from uuid import UUID

from consumers.sql import Q
from floyo_pipeline.api import BatchContext, TelemetryEvent

SHARED_KEY = "privacy"
SKIPPED_CONSENT = "skipped_consent"
SKIPPED_APP = "skipped_app"
SKIPPED_SIGNAL = "skipped_signal"


@dataclass(frozen=True)
class Privacy:
    """One user's settings as the gate needs them."""

    monitored: bool
    apps: frozenset[str]
    signals_off: frozenset[str]


NO_CONSENT = Privacy(False, frozenset(), frozenset())


def skip_reason(row: TelemetryEvent, privacy: Privacy) -> str | None:
    """Why the row must not be analyzed, or None when it may be."""
    if not privacy.monitored:
        return SKIPPED_CONSENT
    if row.app_id not in privacy.apps:
        return SKIPPED_APP
    if row.event_type in privacy.signals_off:
        return SKIPPED_SIGNAL
    return None


def gate(
    rows: Iterable[TelemetryEvent], settings: dict[UUID, Privacy]
) -> tuple[list[TelemetryEvent], dict[str, int]]:
    """The rows that may be analyzed, in order, and the number skipped per reason."""
    kept: list[TelemetryEvent] = []
    skipped: dict[str, int] = {}
    for row in rows:
        privacy = settings.get(row.user_id, NO_CONSENT)
        # skip_reason inlined for the common case: this loop sees every row of every batch.
        if privacy.monitored and row.app_id in privacy.apps and row.event_type not in privacy.signals_off:
            kept.append(row)
        else:
            reason = skip_reason(row, privacy) or SKIPPED_CONSENT
            skipped[reason] = skipped.get(reason, 0) + 1
    return kept, skipped


async def load_privacy(ctx: BatchContext, users: Sequence[UUID]) -> dict[UUID, Privacy]:
    """The settings of `users`, in one query."""
    records = await ctx.fetch(Q["privacy_settings"], list(users))
    return {
        r["user_id"]: Privacy(r["monitored"], frozenset(r["apps"]), frozenset(r["signals_off"]))
        for r in records
    }


async def analyzable(ctx: BatchContext, rows: Sequence[TelemetryEvent]) -> list[TelemetryEvent]:
    """Apply the gate to `rows`, counting the skipped ones on `ctx`; returns the rows to analyze.
    The settings are read once per batch for all the analyzers (in the batch's transaction)."""
    if not rows:
        return []
    settings: dict[UUID, Privacy] = ctx.shared.setdefault(SHARED_KEY, {})
    missing = [u for u in dict.fromkeys(r.user_id for r in rows) if u not in settings]
    if missing:
        settings.update(await load_privacy(ctx, missing))
    kept, skipped = gate(rows, settings)
    for reason, n in skipped.items():
        ctx.count(reason, n)
    return kept
