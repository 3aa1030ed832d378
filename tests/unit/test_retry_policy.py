"""The one retry policy and the circuit breaker, on real driver exceptions (no database)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import asyncpg
import pytest

from app.errors import StorageUnavailable
from app.storage.breaker import DatabaseBreaker, DatabaseCircuitOpen
from app.storage.retry import (
    RetryPolicy,
    TransientStorageError,
    is_transient,
    needs_reconnect,
    signals_outage,
)


def _postgres_error(cls: type[asyncpg.PostgresError]) -> asyncpg.PostgresError:
    return cls("from the server")


@pytest.mark.parametrize(
    ("error", "transient", "outage", "reconnect"),
    [
        (_postgres_error(asyncpg.ReadOnlySQLTransactionError), True, True, True),  # 25006
        (_postgres_error(asyncpg.AdminShutdownError), True, True, True),  # 57P01
        (_postgres_error(asyncpg.QueryCanceledError), True, True, False),  # 57014
        (_postgres_error(asyncpg.DiskFullError), True, True, False),  # 53100
        (_postgres_error(asyncpg.DeadlockDetectedError), True, False, False),  # 40P01
        (_postgres_error(asyncpg.SerializationError), True, False, False),  # 40001
        (_postgres_error(asyncpg.UndefinedTableError), False, False, False),  # 42P01
        (_postgres_error(asyncpg.InvalidTextRepresentationError), False, False, False),  # 22P02
        (ConnectionRefusedError(), True, True, True),
        (asyncpg.ConnectionDoesNotExistError("gone"), True, True, True),
        (asyncpg.exceptions.TargetServerAttributeNotMatched("no rw host"), True, True, True),
        (asyncpg.exceptions.InternalClientError("cannot switch to state 12"), True, True, True),
        (TimeoutError(), True, True, True),
        (ValueError("a bug"), False, False, False),
    ],
)
def test_classification(
    error: BaseException, transient: bool, outage: bool, reconnect: bool
) -> None:
    assert is_transient(error) is transient
    assert signals_outage(error) is outage
    assert needs_reconnect(error) is reconnect


def _failing(cause: BaseException, calls: list[int]) -> Callable[[], Awaitable[None]]:
    async def operation() -> None:
        calls.append(1)
        raise TransientStorageError("mapped") from cause

    return operation


async def test_policy_reconnects_after_a_read_only_error_and_stops_at_the_deadline() -> None:
    reconnects: list[int] = []

    async def reconnect() -> None:
        reconnects.append(1)

    calls: list[int] = []
    policy = RetryPolicy(max_backoff_s=0.01, reconnect=reconnect)
    loop = asyncio.get_running_loop()
    failing = _failing(_postgres_error(asyncpg.ReadOnlySQLTransactionError), calls)
    with pytest.raises(StorageUnavailable):
        await policy.run(failing, loop.time() + 0.2)
    assert len(calls) > 2
    assert len(reconnects) == len(calls) - 1  # after every failure but the last


async def test_policy_does_not_retry_what_is_not_transient() -> None:
    calls: list[int] = []

    async def refused() -> None:
        calls.append(1)
        raise StorageUnavailable("SQLSTATE 42P01")

    with pytest.raises(StorageUnavailable):
        await RetryPolicy(max_backoff_s=0.01).run(refused, float("inf"))
    assert calls == [1]


async def test_breaker_opens_refuses_unasked_then_probes_and_closes() -> None:
    breaker = DatabaseBreaker(failure_threshold=3, reset_after_s=0.2)
    calls: list[int] = []
    outage = _failing(ConnectionRefusedError(), calls)
    for _ in range(3):
        with pytest.raises(TransientStorageError):
            await breaker.call(outage)
    assert breaker.state == "open"
    with pytest.raises(DatabaseCircuitOpen):
        await breaker.call(outage)
    assert len(calls) == 3  # the database was not asked

    async def healthy() -> str:
        return "ok"

    await asyncio.sleep(0.25)
    assert await breaker.probe(healthy) == "ok"  # the trial call after the pause
    assert breaker.state == "closed"
    assert breaker.status() == {"ok": True, "state": "closed", "failures": 0}


async def test_conflicts_and_refusals_never_open_the_breaker() -> None:
    breaker = DatabaseBreaker(failure_threshold=2, reset_after_s=10)
    calls: list[int] = []
    for _ in range(4):
        with pytest.raises(TransientStorageError):
            await breaker.call(_failing(_postgres_error(asyncpg.DeadlockDetectedError), calls))
    assert breaker.state == "closed"


async def test_a_probe_of_a_closed_circuit_does_not_clear_its_failures() -> None:
    breaker = DatabaseBreaker(failure_threshold=2, reset_after_s=10)
    calls: list[int] = []

    async def healthy() -> None:
        return None

    with pytest.raises(TransientStorageError):
        await breaker.call(_failing(ConnectionRefusedError(), calls))
    await breaker.probe(healthy)
    with pytest.raises(TransientStorageError):
        await breaker.call(_failing(ConnectionRefusedError(), calls))
    assert breaker.state == "open"
