"""Connections: the pool for batches, single connections for LISTEN and the CLI.

Every connect is bounded (FLOYO_CONNECT_TIMEOUT_SECONDS) and a failure to connect becomes one
DatabaseUnavailable line with its exit code, never a traceback.
"""

from __future__ import annotations

import json
import socket
from typing import Any

import asyncpg
import orjson

from floyo_pipeline import exits
from floyo_pipeline.config import ConfigError
from floyo_pipeline.logs import scrub
from floyo_pipeline.queries import Q

DEFAULT_CONNECT_TIMEOUT_SECONDS = 10.0
_POWERS = (("superuser", "superuser"), ("bypassrls", "BYPASSRLS"))


class DatabaseUnavailable(Exception):
    """Connecting to the database failed; the message is one line, `exit_code` says which way."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def describe_database_error(err: BaseException) -> str:
    """Class and first line of the message, secrets scrubbed, bounded."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return scrub(f"{type(err).__name__}: {text}" if text else type(err).__name__)[:300]


def connect_failure(err: BaseException, timeout: float) -> Exception:
    """The one-line error (with its exit code) for an exception raised while connecting."""
    why = describe_database_error(err)
    unreachable, refused = exits.DATABASE_UNREACHABLE, exits.DATABASE_REFUSED
    if isinstance(err, TimeoutError):
        return DatabaseUnavailable(
            f"the database did not answer within {timeout:g} s (DATABASE_URL; the bound is "
            "FLOYO_CONNECT_TIMEOUT_SECONDS)",
            unreachable,
        )
    if isinstance(err, socket.gaierror):
        return DatabaseUnavailable(f"cannot resolve the database host of DATABASE_URL: {why}", unreachable)
    if isinstance(err, OSError | asyncpg.CannotConnectNowError | asyncpg.TooManyConnectionsError):
        return DatabaseUnavailable(f"cannot reach the database (DATABASE_URL): {why}", unreachable)
    if isinstance(err, asyncpg.InvalidPasswordError | asyncpg.InvalidAuthorizationSpecificationError):
        return DatabaseUnavailable(
            f"the database refused the login (DATABASE_URL's user and password): {why}", refused
        )
    if isinstance(err, asyncpg.InsufficientPrivilegeError):
        return DatabaseUnavailable(f"permission denied (DATABASE_URL's role): {why}", refused)
    if isinstance(err, asyncpg.PostgresError):
        return DatabaseUnavailable(f"the database refused the connection: {why}", refused)
    if isinstance(err, ValueError | asyncpg.ClientConfigurationError):
        return ConfigError(f"invalid configuration: DATABASE_URL: cannot be used: {type(err).__name__}")
    return DatabaseUnavailable(f"cannot talk to the database (DATABASE_URL): {why}", unreachable)


def _loads(text: str) -> Any:
    # Most JSON the analyzers read back is small (their own state, never numbers beyond 64 bits).
    return {} if text == "{}" else orjson.loads(text)


def _dumps(value: Any) -> str:
    # orjson is several times faster for the analyzers' set-based writes; what it refuses (integers
    # beyond 64 bits) the stdlib still writes.
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return json.dumps(value)


async def init_connection(conn: asyncpg.Connection) -> None:
    for typename in ("json", "jsonb"):
        await conn.set_type_codec(
            typename, encoder=_dumps, decoder=_loads, schema="pg_catalog", format="text"
        )


async def connect(url: str, **kwargs: Any) -> asyncpg.Connection:
    """A connection with the JSON codecs; asyncpg's own exceptions (the engine retries on them)."""
    conn: asyncpg.Connection = await asyncpg.connect(url, **kwargs)
    await init_connection(conn)
    return conn


async def open_connection(
    url: str, timeout: float = DEFAULT_CONNECT_TIMEOUT_SECONDS, **kwargs: Any
) -> asyncpg.Connection:
    """`connect`, bounded by `timeout`, failing as one DatabaseUnavailable line (for commands)."""
    try:
        return await connect(url, timeout=timeout, **kwargs)
    except Exception as err:
        raise connect_failure(err, timeout) from None


async def create_pool(
    url: str, size: int, *, timeout: float = DEFAULT_CONNECT_TIMEOUT_SECONDS, **kwargs: Any
) -> asyncpg.Pool:
    """A pool whose every connect (the first ones and those after an outage) is bounded by `timeout`."""
    try:
        pool: asyncpg.Pool = await asyncpg.create_pool(
            url, min_size=1, max_size=size, init=init_connection, timeout=timeout, **kwargs
        )
    except Exception as err:
        raise connect_failure(err, timeout) from None
    return pool


async def excess_privileges(conn: asyncpg.Connection) -> str | None:
    """Why this login role is too powerful to run the service (superuser or BYPASSRLS, itself or
    through a role it is a member of), or None."""
    rows = await conn.fetch(Q["excess_privileges"])
    if not rows:
        return None
    what = []
    for r in rows:
        power = " and ".join(label for key, label in _POWERS if r[key])
        role = "it" if r["is_login_role"] else f"its role {r['role_name']}"
        what.append(f"{role} has {power}")
    return "; ".join(what)
