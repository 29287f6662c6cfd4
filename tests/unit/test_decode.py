"""Decoding a read row: the row's model, or the reason it cannot be processed (pure, no database)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from floyo_pipeline.engine.decode import Rejected, RowDecoder
from floyo_pipeline.engine.streams import STREAMS, TIME_CEILING, TIME_FLOOR
from floyo_pipeline.rows import TelemetryEvent

AT = datetime(2026, 1, 5, tzinfo=UTC)


def record(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": 7,
        "pipeline_partition": 3,
        "pipeline_txid": 100,
        "user_id": uuid.uuid4(),
        "occurred_at": AT,
        "app_id": "vscode",
        "event_type": "file_opened",
        "file_path": "/a/b.py",
        "duration_ms": None,
        "metadata": '{"k": [1, 2]}',
        "created_at": AT,
        "pipeline_bytes": 40,
        "pipeline_readable": True,
        "pipeline_fits": True,
    }
    return {**base, **changes}


DECODER = RowDecoder(STREAMS["telemetry_events"], max_row_bytes=1000)


def test_an_ordinary_row_becomes_its_model() -> None:
    row = DECODER.decode(record())
    assert isinstance(row, TelemetryEvent)
    assert row.metadata == {"k": [1, 2]} and row.pipeline_partition == 3


def reason(**changes: Any) -> str:
    rejected = DECODER.decode(record(**changes))
    assert isinstance(rejected, Rejected)
    return f"{rejected.error_class}: {rejected.message}"


def test_a_row_too_large_to_read_is_rejected_by_its_size() -> None:
    text = reason(pipeline_readable=False, pipeline_bytes=5000, app_id=None, metadata=None)
    assert text == (
        "RowTooLarge: row is 5000 bytes of text and JSON, over the per-row limit of 1000 bytes"
        " (FLOYO_MAX_ROW_BYTES)"
    )


def test_a_time_the_read_could_not_hold_is_named() -> None:
    assert (
        reason(occurred_at=None)
        == f"ValueOutOfRange: occurred_at: outside {TIME_FLOOR[:10]} .. {TIME_CEILING[:10]}"
    )


def test_json_beyond_the_decoders_limits_is_named_without_its_content() -> None:
    deep = '{"a": ' + "[" * 2000 + "]" * 2000 + "}"
    assert reason(metadata=deep).startswith("UndecodableJson: metadata: ")
    huge = '{"n": ' + "7" * 5000 + "}"
    text = reason(metadata=huge)
    assert text.startswith("UndecodableJson: metadata: ") and "7777" not in text


def test_a_failed_validation_names_the_field_not_the_value() -> None:
    text = reason(duration_ms=-5, app_id="")
    assert text.startswith("ValidationError: ")
    assert "app_id" in text and "duration_ms" in text and "-5" not in text


def test_a_row_the_driver_could_not_read_keeps_its_reason() -> None:
    assert (
        reason(pipeline_error="the row could not be read: X") == "UnreadableRow: the row could not be read: X"
    )
