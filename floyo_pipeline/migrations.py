"""Apply supabase/migrations/ in order, tracked where the Supabase CLI tracks them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import asyncpg

from floyo_pipeline.queries import Q

_FILENAME = re.compile(r"^(\d{14})_([a-z0-9_]+)\.sql$")
_MIGRATE_LOCK = 7_310_001


class MigrationError(Exception):
    """A migration failed; names the file and carries the Postgres error."""


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")


def project_root() -> Path:
    """The folder holding supabase/ (the source checkout, or the image's install folder)."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (Path.cwd(), here):
        if (candidate / "supabase" / "migrations").is_dir():
            return candidate
    raise MigrationError("cannot find supabase/migrations (run from the project folder)")


def discover(folder: Path | None = None) -> list[Migration]:
    folder = folder or project_root() / "supabase" / "migrations"
    found: list[Migration] = []
    for path in sorted(folder.glob("*.sql")):
        match = _FILENAME.match(path.name)
        if match is None:
            raise MigrationError(f"{path.name}: not named like Supabase migrations (YYYYMMDDHHMMSS_name.sql)")
        found.append(Migration(version=match.group(1), name=match.group(2), path=path))
    return found


async def is_supabase(conn: asyncpg.Connection) -> bool:
    return bool(await conn.fetchval(Q["has_auth_schema"]))


async def ensure_compat(conn: asyncpg.Connection) -> bool:
    """On plain Postgres, create the bits of Supabase the migrations rely on; True if applied."""
    if await is_supabase(conn):
        return False
    sql = resources.files("floyo_pipeline").joinpath("sql/supabase_compat.sql").read_text(encoding="utf-8")
    await conn.execute(sql)
    return True


async def applied_versions(conn: asyncpg.Connection) -> set[str]:
    await conn.execute(Q["ensure_migrations_table"])
    rows = await conn.fetch(Q["applied_migrations"])
    return {r["version"] for r in rows}


async def migrate(conn: asyncpg.Connection, folder: Path | None = None) -> list[Migration]:
    """Apply every pending migration, each in its own transaction; returns those applied."""
    migrations = discover(folder)
    await conn.execute("select pg_advisory_lock($1)", _MIGRATE_LOCK)
    try:
        await ensure_compat(conn)
        done = await applied_versions(conn)
        applied: list[Migration] = []
        for migration in migrations:
            if migration.version in done:
                continue
            sql = migration.sql
            try:
                async with conn.transaction():
                    await conn.execute(sql)
                    await conn.execute(Q["record_migration"], migration.version, migration.name, [sql])
            except asyncpg.PostgresError as err:
                raise MigrationError(f"{migration.path.name}: {type(err).__name__}: {err}") from err
            applied.append(migration)
        return applied
    finally:
        await conn.execute("select pg_advisory_unlock($1)", _MIGRATE_LOCK)


async def migrate_down(conn: asyncpg.Connection, version: str) -> list[Migration]:
    """Run rollbacks newest first until `version` is the newest applied migration."""
    raise MigrationError("rollbacks are not implemented yet")
