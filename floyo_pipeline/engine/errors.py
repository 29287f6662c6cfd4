"""Which failures are the database's passing trouble (retry) and which are the row's (dead-letter)."""

from __future__ import annotations

import asyncpg


class LeaseLost(Exception):
    """The checkpoint no longer belongs to this replica at this epoch: the batch must not commit."""


_TRANSIENT_SQLSTATE_PREFIXES = ("08", "40", "53", "57P", "55P03", "58")


def is_transient(err: BaseException) -> bool:
    """Connection loss, serialization failure, deadlock, shutdown, lock timeout, resource exhaustion."""
    if isinstance(err, asyncpg.PostgresError):
        state = getattr(err, "sqlstate", None) or ""
        return state.startswith(_TRANSIENT_SQLSTATE_PREFIXES)
    # asyncpg raises InternalClientError ("cannot switch to state ...") when the server ends a
    # connection while an operation is starting on it (pg_terminate_backend, pooler restart).
    return isinstance(
        err,
        asyncpg.InternalClientError
        | asyncpg.InterfaceError
        | asyncpg.exceptions.ConnectionDoesNotExistError
        | ConnectionError
        | OSError
        | TimeoutError,
    )
