"""What the consumers store, derived from their `tables` declarations (floyo_pipeline.api.Table)."""

from __future__ import annotations

from collections.abc import Iterable

from floyo_pipeline.api import Consumer, Table


def declared_tables(consumers: Iterable[Consumer]) -> tuple[Table, ...]:
    """Every table the consumers declare, once, in the order first declared. A table several consumers
    write (an output like public.relationships) must be declared alike by each: ValueError if not."""
    found: dict[str, Table] = {}
    for consumer in consumers:
        for table in consumer.tables:
            first = found.setdefault(table.name, table)
            if first != table:
                raise ValueError(f"consumer {consumer.name} declares {table} unlike {first}")
    return tuple(found.values())
