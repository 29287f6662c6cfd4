"""The benchmark's SQL, kept in bench/queries.sql under `-- name:` headers."""

from __future__ import annotations

from pathlib import Path

from floyo_pipeline.queries import load_queries

BQ = load_queries(Path(__file__).with_name("queries.sql"))
