"""Named SQL queries kept in .sql files under `-- name: query_name` headers (procrastinate's habit).

Every `floyo_pipeline/sql/*.sql` file except the Supabase compatibility script is loaded into `Q`;
a name may appear only once across them.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

_HEADER = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)
_NOT_QUERIES = {"supabase_compat.sql"}


def parse_queries(text: str, into: dict[str, str] | None = None) -> dict[str, str]:
    """Split a .sql file into {name: sql}; text before the first header is ignored."""
    queries: dict[str, str] = {} if into is None else into
    parts = _HEADER.split(text)
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


def _load_engine_queries() -> dict[str, str]:
    queries: dict[str, str] = {}
    folder = resources.files("floyo_pipeline").joinpath("sql")
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".sql") and entry.name not in _NOT_QUERIES:
            parse_queries(entry.read_text(encoding="utf-8"), into=queries)
    return queries


Q = _load_engine_queries()
