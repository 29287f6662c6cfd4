"""Which failures are the database's passing trouble (retry) and which are the row's (dead-letter), and
how long to wait before trying again. The one place that says what "database trouble" is."""

from __future__ import annotations

import random
from collections.abc import Iterator

import asyncpg

DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)
"""Whatever a database call can fail with: what health checks and jobs report instead of crashing."""


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


def backoff_delays(base: float = 0.2, cap: float = 10.0) -> Iterator[float]:
    """Capped exponential backoff with full jitter, forever."""
    attempt = 0
    while True:
        yield random.uniform(0, min(cap, base * 2**attempt))
        attempt += 1
