"""Which failures are retried and how long to wait (pure, no database)."""

from __future__ import annotations

import itertools
import random

import asyncpg
import pytest

from floyo_pipeline.engine.errors import backoff_delays, is_transient


@pytest.mark.parametrize(
    "err",
    [
        asyncpg.SerializationError("could not serialize"),
        asyncpg.DeadlockDetectedError("deadlock"),
        asyncpg.LockNotAvailableError("lock timeout"),
        asyncpg.AdminShutdownError("shutting down"),
        asyncpg.TooManyConnectionsError("too many"),
        asyncpg.ConnectionDoesNotExistError("gone"),
        asyncpg.InterfaceError("connection is closed"),
        asyncpg.InternalClientError("cannot switch to state 15"),
        ConnectionResetError(),
        OSError("unreachable"),
        TimeoutError(),
    ],
    ids=lambda e: type(e).__name__,
)
def test_the_databases_passing_trouble_is_transient(err: BaseException) -> None:
    assert is_transient(err)


@pytest.mark.parametrize(
    "err",
    [
        asyncpg.UniqueViolationError("duplicate key"),
        asyncpg.CheckViolationError("check"),
        asyncpg.ProgramLimitExceededError("index row requires 10312 bytes"),
        asyncpg.QueryCanceledError("statement timeout"),
        asyncpg.InsufficientPrivilegeError("permission denied"),
        ValueError("a handler's own bug"),
        KeyError("x"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_a_rows_or_a_handlers_fault_is_not(err: BaseException) -> None:
    assert not is_transient(err)


def test_backoff_grows_to_its_cap_with_full_jitter() -> None:
    random.seed(1)
    delays = list(itertools.islice(backoff_delays(base=0.1, cap=2.0), 200))
    for attempt, delay in enumerate(delays):
        assert 0 <= delay <= min(2.0, 0.1 * 2**attempt)
    assert max(delays[:3]) <= 0.4
    assert max(delays[50:]) > 1.0  # once capped, some waits come close to the cap
