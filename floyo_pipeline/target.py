"""Which database a command talks to: DATABASE_URL, or the embedded one when asked for by name."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from floyo_pipeline.config import ConfigError, Settings
from floyo_pipeline.connections import connect
from floyo_pipeline.embedded import SERVICE_ROLE, embedded_postgres, require_embedded, supabase_roles
from floyo_pipeline.logs import get_logger
from floyo_pipeline.migration_lock import migration_lock
from floyo_pipeline.migrations import ensure_compat, migrate
from floyo_pipeline.queries import Q

log = get_logger(__name__)

NO_DATABASE = (
    "no database configured: set DATABASE_URL (or FLOYO_EMBEDDED=true / --embedded for a local "
    "embedded Postgres in FLOYO_DATA_DIR)"
)


@dataclass(frozen=True)
class Target:
    """`admin_url` owns the schema and runs migrations (Supabase's `postgres`, not a superuser);
    `service_url` is the least-privileged role the service uses."""

    admin_url: str
    service_url: str
    embedded: bool


@asynccontextmanager
async def database_target(
    settings: Settings, *, auto_migrate: bool = True, embedded_by_default: bool = False
) -> AsyncIterator[Target]:
    """DATABASE_URL; else the embedded Postgres if FLOYO_EMBEDDED (or the command itself) asks for it.

    Without either a command refuses to start (ConfigError): a deployment whose secret is missing
    must not come up healthy on a private, empty database.
    """
    if settings.database_url is not None:
        url = settings.database_url.get_secret_value()
        yield Target(admin_url=url, service_url=url, embedded=False)
        return
    if not (settings.embedded or embedded_by_default):
        raise ConfigError(NO_DATABASE)
    require_embedded()
    with embedded_postgres(settings.data_dir) as started:
        # What a Supabase project provides (roles, default privileges, auth), as its superuser; the
        # migrations then run as the owner, which is not one.
        pg = await supabase_roles(started)
        conn = await connect(pg.admin_url)
        try:
            await ensure_compat(conn)
        finally:
            await conn.close()
        if auto_migrate:
            conn = await connect(pg.owner_url)
            try:
                async with migration_lock(
                    conn,
                    pg.owner_url,
                    settings.migrate_lock_timeout_seconds,
                    settings.connect_timeout_seconds,
                ):
                    applied = await migrate(conn)
                await conn.execute(Q["ensure_service_login_role"].replace("$role", SERVICE_ROLE))
            finally:
                await conn.close()
            log.info(
                "embedded.ready",
                data_dir=str(settings.data_dir),
                migrations_applied=[m.version for m in applied],
            )
        yield Target(admin_url=pg.owner_url, service_url=pg.service_url, embedded=True)
