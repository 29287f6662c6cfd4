"""Named SQL queries kept in .sql files under `-- name: query_name` headers (procrastinate's habit)."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

_HEADER = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


def parse_queries(text: str) -> dict[str, str]:
    """Split a .sql file into {name: sql}; text before the first header is ignored."""
    parts = _HEADER.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"duplicate query name {name!r}")
        queries[name] = body.strip().rstrip(";")
    return queries


def load_queries(source: Path | str) -> dict[str, str]:
    """Load named queries from a path, or from 'package:file.sql' inside an installed package."""
    if isinstance(source, str) and ":" in source:
        package, filename = source.split(":", 1)
        return parse_queries(resources.files(package).joinpath(filename).read_text(encoding="utf-8"))
    return parse_queries(Path(source).read_text(encoding="utf-8"))


Q = load_queries("floyo_pipeline:sql/queries.sql")
