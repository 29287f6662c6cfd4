"""Apply supabase/migrations/ in order, tracked where the Supabase CLI tracks them.

The files ship inside the package (`floyo_pipeline/migration_files/`, copied from supabase/ when the
wheel is built), so `migrate` works from any folder and always applies the schema of the code that
runs; an editable install reads them from its checkout's supabase/.

`migrate` and `migrate_down` take no lock themselves: a caller that may run beside another one (the
CLI, the embedded start-up) holds `floyo_pipeline.migration_lock.migration_lock` around them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import asyncpg

from floyo_pipeline.queries import Q

_FILENAME = re.compile(r"^(\d{14})_([a-z0-9_]+)\.sql$")


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


def schema_folder() -> Path:
    """The folder holding migrations/ and rollbacks/: in the installed package, or the checkout."""
    package = Path(__file__).resolve().parent
    for candidate in (package / "migration_files", package.parent / "supabase"):
        if (candidate / "migrations").is_dir():
            return candidate
    raise MigrationError("this installation has no migrations (floyo_pipeline/migration_files is missing)")


def discover(folder: Path | None = None) -> list[Migration]:
    folder = folder or schema_folder() / "migrations"
    found: list[Migration] = []
    for path in sorted(folder.glob("*.sql")):
        match = _FILENAME.match(path.name)
        if match is None:
            raise MigrationError(f"{path.name}: not named like Supabase migrations (YYYYMMDDHHMMSS_name.sql)")
        found.append(Migration(version=match.group(1), name=match.group(2), path=path))
    return found


async def is_supabase(conn: asyncpg.Connection) -> bool:
    """True on a Supabase project (an `auth` schema that the compatibility bootstrap did not make)."""
    state = await conn.fetchrow(Q["compat_state"])
    return bool(state is not None and state["has_auth"] and not state["ours"])


async def ensure_compat(conn: asyncpg.Connection) -> bool:
    """On plain Postgres, provide what Supabase would (roles, default privileges, `auth`, the
    publication); True if applied. Needs a superuser the first time; a later run by a superuser
    refreshes it, a later run by anyone else skips it. Never runs on a Supabase project."""
    state = await conn.fetchrow(Q["compat_state"])
    assert state is not None
    if state["has_auth"] and not (state["ours"] and state["superuser"]):
        return False
    sql = resources.files("floyo_pipeline").joinpath("sql/supabase_compat.sql").read_text(encoding="utf-8")
    try:
        await conn.execute(sql)
    except asyncpg.PostgresError as err:
        raise MigrationError(
            f"supabase_compat.sql: {type(err).__name__}: {err} (on plain Postgres the first migrate "
            "runs a Supabase compatibility bootstrap that needs a superuser)"
        ) from err
    return True


async def applied_versions(conn: asyncpg.Connection) -> set[str]:
    await conn.execute(Q["ensure_migrations_table"])
    rows = await conn.fetch(Q["applied_migrations"])
    return {r["version"] for r in rows}


async def migrate(conn: asyncpg.Connection, folder: Path | None = None) -> list[Migration]:
    """Apply every pending migration, each in its own transaction; returns those applied."""
    migrations = discover(folder)
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


def rollback_path(folder: Path, version: str, name: str) -> Path:
    """The reverse script of migration `version_name.sql`: `version_name.down.sql` in `folder`."""
    return folder / f"{version}_{name}.down.sql"


async def migrate_down(
    conn: asyncpg.Connection,
    version: str,
    folder: Path | None = None,
    rollbacks: Path | None = None,
) -> list[Migration]:
    """Run rollbacks newest first until `version` is the newest applied migration.

    Each rollback runs in its own transaction together with the removal of its tracking row. Every
    rollback file needed is checked before any runs. Returns the migrations undone (their `path` is
    the rollback script that ran), newest first.
    """
    folder = folder or schema_folder() / "migrations"
    rollbacks = rollbacks or folder.parent / "rollbacks"
    names = {m.version: m.name for m in discover(folder)}
    await conn.execute(Q["ensure_migrations_table"])
    applied = [(r["version"], r["name"]) for r in await conn.fetch(Q["applied_migrations_named"])]
    applied_versions = {v for v, _ in applied}
    if version not in applied_versions:
        if version in names:
            raise MigrationError(f"migration {version} is not applied, cannot roll back to it")
        raise MigrationError(f"unknown migration version {version!r}")
    plan: list[Migration] = []
    for applied_version, tracked_name in sorted(applied, reverse=True):
        if applied_version <= version:
            break
        name = names.get(applied_version) or tracked_name or "unknown"
        path = rollback_path(rollbacks, applied_version, name)
        if not path.is_file():
            raise MigrationError(f"missing rollback {path.name} (expected in {rollbacks})")
        plan.append(Migration(version=applied_version, name=name, path=path))
    for done, step in enumerate(plan):
        try:
            async with conn.transaction():
                await conn.execute(step.sql)
                await conn.execute(Q["forget_migration"], step.version)
        except asyncpg.PostgresError as err:
            raise MigrationError(
                f"{step.path.name}: {type(err).__name__}: {err} ({done} newer rollback(s) committed)"
            ) from err
    return plan
