"""What an analyzer can store of a row. The text columns it keeps in keys and indexes (app ids, event
types, file paths) have byte limits: a row over a limit is rejected by that analyzer (a dead letter
naming the column and the limit) before it touches outputs or state, so it can never make a later,
innocent row fail (an index entry too large for Postgres, say)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from floyo_pipeline.api import BatchContext, TelemetryEvent

MAX_STORED_BYTES = {"app_id": 200, "event_type": 100, "file_path": 1024}


def storable(
    ctx: BatchContext, rows: Iterable[TelemetryEvent], columns: Sequence[str]
) -> list[TelemetryEvent]:
    """The rows whose `columns` fit their limits, in order; the others are rejected on `ctx`."""
    limits = [(name, MAX_STORED_BYTES[name]) for name in columns]
    kept: list[TelemetryEvent] = []
    for row in rows:
        for name, limit in limits:
            value: str | None = getattr(row, name)
            # Four bytes a character at most: only long values need encoding.
            if value is not None and len(value) * 4 > limit and len(value.encode()) > limit:
                ctx.reject(
                    row, f"{name}: {len(value.encode())} bytes, over the {limit}-byte limit of stored values"
                )
                break
        else:
            kept.append(row)
    return kept
