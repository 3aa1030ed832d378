"""The one retry policy of every database writer: what is retryable, how often, how long.

Every writer (the batch writer, and through it replay and the RabbitMQ consumer; the
quality recorder) runs its database work through `RetryPolicy.run`, so a fault is judged
the same way wherever it strikes:

- **Classification** (`is_transient`, by SQLSTATE and exception type, never by message
  text): connection loss, timeouts, a server shutting down or refusing connections, a
  read-only server (SQLSTATE 25006: the connection landed on a standby, or on a primary
  that was demoted by a failover), no host matching `target_session_attrs`, lock and
  serialization conflicts, a full disk. Everything else is not retried.
- **Reconnection** (`needs_reconnect`): after connection loss or 25006 the pool's
  connections all point at a server that is gone or read-only, so every one of them is
  replaced (`asyncpg.Pool.expire_connections`) and the next attempt connects afresh to
  whichever host of a multi-host `DATABASE_URL` is read-write now.
- **Budget**: the first attempt goes straight through; retries back off exponentially
  with full jitter (tenacity), bounded by the deadline of the earliest waiting request
  (and by `max_attempts`); then `StorageUnavailable` (503 with `Retry-After`).
- **Breaker**: each attempt passes the circuit breaker (`app.storage.breaker`); an open
  circuit fails at once with `DatabaseCircuitOpen`, which is not retried here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

import asyncpg
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    wait_random_exponential,
)

from app.clock import MonotonicClock, monotonic
from app.errors import CircuitOpen, StorageUnavailable, TransientStorageError
from app.observability import metrics

log = logging.getLogger(__name__)

T = TypeVar("T")

READ_ONLY_TRANSACTION = "25006"  # read_only_sql_transaction: a standby, or a demoted primary

# Retrying can help, and the database is not at fault for being asked (conflicts).
_CONFLICT_SQLSTATES = frozenset(
    {
        "40001",  # serialization_failure
        "40P01",  # deadlock_detected
    }
)
# Retrying can help once the database (or its operator) recovers: these signal an outage,
# so they also count towards opening the circuit breaker.
_OUTAGE_SQLSTATES = frozenset(
    {
        READ_ONLY_TRANSACTION,
        "55P03",  # lock_not_available
        "57014",  # query_canceled (statement_timeout)
        "57P01",  # admin_shutdown
        "57P02",  # crash_shutdown
        "57P03",  # cannot_connect_now
        "53300",  # too_many_connections
        "53100",  # disk_full: an operator can free space without losing the batch
    }
)
_CONNECTION_CLASS = "08"  # connection_exception
_RECONNECT_SQLSTATES = frozenset({READ_ONLY_TRANSACTION, "57P01", "57P02", "57P03"})
# The connection itself failed: refused, reset, closed under us, timed out, or no host of a
# multi-host URL was read-write (between a primary's death and a standby's promotion).
# `InternalClientError` covers that last case and a connection the driver left in a bad
# protocol state (seen when a session is terminated while a query on it is cancelled:
# "cannot switch to state …; another operation is in progress"): replace it and retry.
_CONNECTION_ERRORS = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.InternalClientError,
)


def _sqlstate(exc: BaseException) -> str | None:
    return (exc.sqlstate or "") if isinstance(exc, asyncpg.PostgresError) else None


def signals_outage(exc: BaseException) -> bool:
    """The database is unreachable, read-only, overloaded or too slow: retryable later,
    and a sign the circuit breaker should count. Not a conflict between batches."""
    state = _sqlstate(exc)
    if state is not None:
        return state in _OUTAGE_SQLSTATES or state[:2] == _CONNECTION_CLASS
    return isinstance(exc, _CONNECTION_ERRORS)


def is_transient(exc: BaseException) -> bool:
    """The same statement may succeed if retried (a driver or server error)."""
    return signals_outage(exc) or _sqlstate(exc) in _CONFLICT_SQLSTATES


def needs_reconnect(exc: BaseException) -> bool:
    """The pool's connections can no longer be trusted to reach a read-write server."""
    state = _sqlstate(exc)
    if state is not None:
        return state in _RECONNECT_SQLSTATES or state[:2] == _CONNECTION_CLASS
    return isinstance(exc, _CONNECTION_ERRORS)


def root_cause(exc: BaseException) -> BaseException:
    """The driver's error behind our mapped one (`raise ... from exc`)."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


class BreakerLike(Protocol):
    """What the policy needs of a circuit breaker (`app.storage.breaker.DatabaseBreaker`)."""

    async def call(self, operation: Callable[[], Awaitable[T]]) -> T: ...


class RetryPolicy:
    def __init__(
        self,
        *,
        max_backoff_s: float,
        max_attempts: int = 50,
        reconnect: Callable[[], Awaitable[None]] | None = None,
        breaker: BreakerLike | None = None,
        clock: MonotonicClock = monotonic,
    ) -> None:
        self._max_backoff_s = max_backoff_s
        self._max_attempts = max_attempts
        self._reconnect = reconnect
        self._breaker = breaker
        self._clock = clock

    @classmethod
    def for_pool(
        cls, pool: asyncpg.Pool, *, max_backoff_s: float, breaker: BreakerLike | None = None
    ) -> RetryPolicy:
        """The policy of a process's writers: reconnects `pool`, guarded by `breaker`."""
        return cls(max_backoff_s=max_backoff_s, reconnect=pool.expire_connections, breaker=breaker)

    async def run(self, operation: Callable[[], Awaitable[T]], deadline: float) -> T:
        """`operation()`'s result, retried on `TransientStorageError` until `deadline` (a
        clock reading); raises `StorageUnavailable` once the budget is spent or the
        circuit is open, and lets every other error through untouched."""
        try:
            return await self._run(operation, deadline)
        except CircuitOpen:
            metrics.FLUSH_FAILURES.inc()  # not committed, like a spent budget
            raise

    async def _run(self, operation: Callable[[], Awaitable[T]], deadline: float) -> T:
        # The first attempt goes straight through: building a retry controller per batch
        # costs more than the write's own Python work when nothing fails.
        try:
            return await self._attempt(operation)
        except TransientStorageError as exc:
            await self._after_failure(exc, attempt=1)
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(TransientStorageError),
            wait=wait_random_exponential(multiplier=0.05, max=self._max_backoff_s),
            stop=self._stop(deadline),
            before_sleep=self._before_sleep,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._attempt(operation)
        except TransientStorageError as exc:
            metrics.FLUSH_FAILURES.inc()
            raise StorageUnavailable("database unavailable past the retry budget") from exc
        raise AssertionError("unreachable: tenacity either returns or reraises")

    async def _attempt(self, operation: Callable[[], Awaitable[T]]) -> T:
        if self._breaker is None:
            return await operation()
        return await self._breaker.call(operation)

    def _stop(self, deadline: float) -> Callable[[RetryCallState], bool]:
        def past_budget(state: RetryCallState) -> bool:
            upcoming = state.upcoming_sleep or 0.0
            # +1: the straight first attempt is not tenacity's.
            out_of_attempts = state.attempt_number + 1 >= self._max_attempts
            return out_of_attempts or self._clock() + upcoming >= deadline

        return past_budget

    async def _before_sleep(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        if error is not None:
            await self._after_failure(error, attempt=state.attempt_number + 1)

    async def _after_failure(self, error: BaseException, *, attempt: int) -> None:
        metrics.FLUSH_RETRIES.inc()
        cause = root_cause(error)
        log.warning(
            "retrying after a transient database error",
            extra={"attempt": attempt, "error": type(cause).__name__},
        )
        if self._reconnect is not None and needs_reconnect(cause):
            await self._reconnect()
