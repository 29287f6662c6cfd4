"""Turning one read row into its model, or into the reason it cannot be processed.

Whatever a client stored, decoding one row never raises: it returns the row or a `Rejected` that the
batch dead-letters for every consumer that would have received the row. The reasons name fields and
limits, never values (dead letters carry no telemetry payload).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import ValidationError

from floyo_pipeline.engine.streams import TIME_CEILING, TIME_FLOOR, Stream
from floyo_pipeline.rows import StreamRow

MAX_ERROR_MESSAGE = 2000
_TIME_RANGE = f"{TIME_FLOOR[:10]} .. {TIME_CEILING[:10]}"


@dataclass(frozen=True)
class Rejected:
    """Why a row cannot be handed to the consumers."""

    error_class: str
    message: str


def error_text(err: BaseException) -> str:
    """A bounded one-line reason; pydantic's own text would quote the input, so only fields are named."""
    if isinstance(err, ValidationError):
        text = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors(include_input=False)
        )
    else:
        text = str(err)
    return text[:MAX_ERROR_MESSAGE] or type(err).__name__


class RowDecoder:
    """Decodes the rows of one stream as read by its fetch queries."""

    def __init__(self, stream: Stream, max_row_bytes: int) -> None:
        self.model = stream.model
        # The model's own validator, without model_validate's per-call overhead (every row goes here).
        self.validate = stream.model.__pydantic_validator__.validate_python
        self.max_row_bytes = max_row_bytes
        self.times = [n for n, k in stream.kinds.items() if k == "time"]
        self.json = [n for n, k in stream.kinds.items() if k == "json"]
        self.fields = ["id", "pipeline_partition", *stream.kinds]
        self.required_times = [n for n in self.times if self.model.model_fields[n].is_required()]

    def decode(self, record: Mapping[str, Any]) -> StreamRow | Rejected:
        failure = record.get("pipeline_error")
        if failure is not None:
            return Rejected("UnreadableRow", str(failure))
        if not record["pipeline_readable"]:
            return Rejected(
                "RowTooLarge",
                f"row is {record['pipeline_bytes']} bytes of text and JSON, over the per-row limit of "
                f"{self.max_row_bytes} bytes (FLOYO_MAX_ROW_BYTES)",
            )
        values = {name: record[name] for name in self.fields}
        for name in self.required_times:
            if values[name] is None:
                return Rejected(
                    "ValueOutOfRange", f"{name}: outside {TIME_FLOOR[:10]} .. {TIME_CEILING[:10]}"
                )
        for name in self.json:
            text = values[name]
            if text is None:
                continue
            try:
                values[name] = orjson.loads(text)
            except orjson.JSONDecodeError as err:
                return Rejected("UndecodableJson", f"{name}: {err}"[:MAX_ERROR_MESSAGE])
        try:
            row: StreamRow = self.validate(values)
            return row
        except ValidationError as err:
            return Rejected(type(err).__name__, error_text(err))
        except (ValueError, TypeError, OverflowError, RecursionError) as err:
            return Rejected(type(err).__name__, error_text(err))
