"""The privacy gate in front of every telemetry analyzer (docs/analyzers.md; G9 in docs/guarantees.md).

A row is analyzed only if its user gave consent and left monitoring on, its app is allow-listed,
enabled and not scoped `none`, and its event type is not switched off. Settings are read inside the
batch's transaction, so a change applies to every row processed after it commits; they come from the
pipeline's copy of the settings tables (migration 20261128001200), which no user can lock.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
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


@dataclass
class BatchPrivacy:
    """The gate's answers in one batch (shared by its analyzers): per user, and which apps and event
    types of theirs have been asked about. All of a user's answers come from one reading."""

    settings: dict[UUID, Privacy] = field(default_factory=dict)
    asked_apps: dict[UUID, set[str]] = field(default_factory=dict)
    asked_signals: dict[UUID, set[str]] = field(default_factory=dict)


async def load_privacy(ctx: BatchContext, rows: Sequence[TelemetryEvent], known: BatchPrivacy) -> None:
    """Look up, in one query, what the gate needs for `rows` and `known` does not hold yet. A user with
    a new key is read again whole (every key the batch asked about them), so that consent, apps and
    signals of a user always come from the same committed settings."""
    apps: dict[UUID, set[str]] = {}
    signals: dict[UUID, set[str]] = {}
    for r in rows:
        apps.setdefault(r.user_id, set()).add(r.app_id)
        signals.setdefault(r.user_id, set()).add(r.event_type)
    empty: set[str] = set()
    users = [
        u
        for u in apps
        if u not in known.settings
        or not apps[u] <= known.asked_apps.get(u, empty)
        or not signals[u] <= known.asked_signals.get(u, empty)
    ]
    if not users:
        return
    app_keys = [(u, a) for u in users for a in apps[u] | known.asked_apps.get(u, empty)]
    signal_keys = [(u, k) for u in users for k in signals[u] | known.asked_signals.get(u, empty)]
    records = await ctx.fetch(
        Q["privacy_settings"],
        users,
        [u for u, _ in app_keys],
        [a for _, a in app_keys],
        [u for u, _ in signal_keys],
        [k for _, k in signal_keys],
    )
    for u in users:
        known.asked_apps[u] = apps[u] | known.asked_apps.get(u, empty)
        known.asked_signals[u] = signals[u] | known.asked_signals.get(u, empty)
    for r in records:
        known.settings[r["user_id"]] = Privacy(
            r["monitored"], frozenset(r["apps"]), frozenset(r["signals_off"])
        )


async def analyzable(ctx: BatchContext, rows: Sequence[TelemetryEvent]) -> list[TelemetryEvent]:
    """Apply the gate to `rows`, counting the skipped ones on `ctx`; returns the rows to analyze.
    The settings are read in the batch's transaction, once per key for all the analyzers."""
    if not rows:
        return []
    known: BatchPrivacy = ctx.shared.setdefault(SHARED_KEY, BatchPrivacy())
    await load_privacy(ctx, rows, known)
    kept, skipped = gate(rows, known.settings)
    for reason, n in skipped.items():
        ctx.count(reason, n)
    return kept
