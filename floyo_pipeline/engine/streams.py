"""The streams, each declared once: its row model, its table, its partition expression, the column
retention measures a row's age by, and every query the engine runs against it, rendered from one
template (floyo_pipeline/sql/templates/stream.sql).

Columns come from the row model. How a column is read follows its type, so that no value a client can
store makes a batch read fail in Python: timestamps outside what Python's datetime holds come back
null, JSON comes back as text (decoded row by row, with limits), and text and JSON of a row larger
than the per-row limit are not read at all.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from datetime import datetime
from types import UnionType
from typing import Literal

from floyo_pipeline.api import Table
from floyo_pipeline.queries import load_queries
from floyo_pipeline.rows import MetricsLogEntry, StreamRow, TelemetryEvent

ColumnKind = Literal["plain", "time", "text", "json"]

# Python's datetime spans years 1..9999; a day of margin keeps date arithmetic in range too.
TIME_FLOOR = "0001-01-02 00:00:00+00"
TIME_CEILING = "9999-12-30 00:00:00+00"
KEY_COLUMNS = ("id", "pipeline_partition", "pipeline_txid")


def column_kind(annotation: object) -> ColumnKind:
    """How a model field is read: a timestamp, text, JSON, or a plain fixed-size value."""
    if typing.get_origin(annotation) in (typing.Union, UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        annotation = args[0] if len(args) == 1 else annotation
    if annotation is datetime:
        return "time"
    if annotation is str or typing.get_origin(annotation) is Literal:
        return "text"
    if annotation is dict or typing.get_origin(annotation) is dict:
        return "json"
    return "plain"


def _select(name: str, kind: ColumnKind) -> str:
    if kind == "time":
        return (
            f"case when r.{name} > '{TIME_FLOOR}' and r.{name} < '{TIME_CEILING}' then r.{name} end as {name}"
        )
    if kind == "text":
        return f"case when r.pipeline_fits and r.pipeline_readable then r.{name} end as {name}"
    if kind == "json":
        return f"case when r.pipeline_fits and r.pipeline_readable then r.{name}::text end as {name}"
    return f"r.{name}"


def _size(name: str, kind: ColumnKind) -> str | None:
    # octet_length of text reads the size from the toast header; JSON has no such function, so a
    # compressed value is measured as text (only then is it decompressed).
    if kind == "text":
        return f"coalesce(octet_length(t.{name}), 0)"
    if kind == "json":
        return (
            f"coalesce(case when pg_column_compression(t.{name}) is null then pg_column_size(t.{name}) "
            f"else octet_length(t.{name}::text) end, 0)"
        )
    return None


_TEMPLATE = load_queries("floyo_pipeline:sql/templates/stream.sql")
# The batch reads: the `read` template with the rows each selects and its parameters' places.
_READS = {"fetch_forward": ("$6", "$7", "$8"), "fetch_pending": ("$3", "$4", "$5")}
QUERY_NAMES = tuple(name for name in _TEMPLATE if name != "read")


@dataclass(frozen=True)
class Stream:
    """A stream table: its rows are read in (pipeline_txid, id) order, per partition."""

    model: type[StreamRow]
    partition_sql: str
    """The partition of a row, as SQL over the table alias `t`."""
    age_column: str | None = None
    """The event-time column retention measures a row's age by (None: retention keeps the rows)."""
    queries: dict[str, str] = field(init=False, repr=False)
    kinds: dict[str, ColumnKind] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        kinds = {
            name: column_kind(info.annotation)
            for name, info in self.model.model_fields.items()
            if name not in KEY_COLUMNS
        }
        sizes = [s for s in (_size(n, k) for n, k in kinds.items()) if s is not None]
        columns = ", ".join(
            ["r.id", "r.pipeline_partition", "r.pipeline_txid"] + [_select(n, k) for n, k in kinds.items()]
        )
        keys = ", ".join(f"r.{name}" for name in KEY_COLUMNS)
        values = {
            "stream": self.name,
            "table": f"public.{self.name}",
            "partition": self.partition_sql,
            "row_bytes": " + ".join(sizes) or "0",
        }
        queries = {name: _TEMPLATE[name].format(columns=columns, **values) for name in QUERY_NAMES}
        for name, (limit, budget, row_limit) in _READS.items():
            where = "\n".join(x for x in _TEMPLATE[name].splitlines() if not x.lstrip().startswith("--"))
            read = {"where": where.format(**values), "limit": limit, "budget": budget}
            read = {**read, "row_limit": row_limit, **values}
            queries[name] = _TEMPLATE["read"].format(columns=columns, **read)
            # The same read with only the keys: what is left to read when a batch read itself fails.
            queries[f"{name}_keys"] = _TEMPLATE["read"].format(columns=keys, **read)
        object.__setattr__(self, "kinds", kinds)
        object.__setattr__(self, "queries", queries)

    @property
    def name(self) -> str:
        return self.model.__table__

    @property
    def table(self) -> Table:
        """The stream's table as retention sees it (rows of a user when the model has a user_id)."""
        user = "user_id" if "user_id" in self.model.model_fields else None
        return Table(name=f"public.{self.name}", user_column=user, age_column=self.age_column)


# A user's partition is floyo_pipeline.user_partition()'s body, spelled out: that function has a
# fixed search_path, and Postgres does not inline such a function (a call per row costs about ten
# times the expression).
USER_PARTITION = "(get_byte(uuid_send(t.user_id), 15) % 64)"

STREAMS: dict[str, Stream] = {
    stream.name: stream
    for stream in (
        Stream(TelemetryEvent, USER_PARTITION, age_column="occurred_at"),
        Stream(MetricsLogEntry, "0"),
    )
}
