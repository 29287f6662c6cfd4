"""The analyzers' named SQL queries, loaded once from consumers/queries.sql."""

from __future__ import annotations

from floyo_pipeline.api import load_queries

Q: dict[str, str] = load_queries("consumers:queries.sql")
