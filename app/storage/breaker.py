"""The circuit breaker around PostgreSQL (purgatory), one per process.

Closed: every database call goes through; a call failing with an outage signal
(`retry.signals_outage`: connection loss, timeouts, a read-only or shutting-down server)
counts, a success resets the count. After `failure_threshold` failures in a row it opens:
for `reset_after_s` no call reaches the database, each fails at once with
`DatabaseCircuitOpen` (a 503 with `Retry-After`), so a struggling or failed-over database
is not hammered by retries from every worker. Then it is half-open: the next calls are
trials (live batches or the readiness probe, whichever comes first); one success closes
it, one failure opens it again.

Conflicts (deadlocks), refused values and bugs never count: they say nothing about the
database's health. The state is the gauge `sluice_database_circuit_state` (0 closed,
1 half-open, 2 open) and the `circuit` component of `/health`. It costs about 10 µs per
database call (a batch, not an event).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from purgatory import AsyncCircuitBreakerFactory
from purgatory.domain.messages import Event
from purgatory.domain.model import CLOSED, HALF_OPENED, OPENED, OpenedState

from app.errors import CircuitOpen
from app.observability import metrics
from app.storage.retry import root_cause, signals_outage

log = logging.getLogger(__name__)

T = TypeVar("T")

_CIRCUIT = "postgresql"
_STATE_VALUES = {CLOSED: 0, HALF_OPENED: 1, OPENED: 2}
_STATE_NAMES = {CLOSED: "closed", HALF_OPENED: "half-open", OPENED: "open"}


class DatabaseCircuitOpen(CircuitOpen):
    """The breaker is open: the database was not asked. Not retried by the policy."""

    def __init__(self) -> None:
        super().__init__("database circuit open after repeated failures; not tried")


def _not_an_outage(exc: BaseException) -> bool:
    return not signals_outage(root_cause(exc))


class DatabaseBreaker:
    def __init__(self, *, failure_threshold: int, reset_after_s: float) -> None:
        self._factory = AsyncCircuitBreakerFactory(
            default_threshold=failure_threshold,
            default_ttl=reset_after_s,
            # purgatory counts every exception unless excluded: (type, predicate) pairs
            # whose predicate says "this one is not a failure".
            exclude=[(BaseException, _not_an_outage)],
        )
        self._factory.add_listener(self._on_event)
        self._state = CLOSED
        self._failures = 0
        metrics.DATABASE_CIRCUIT_STATE.set(0)

    @property
    def state(self) -> str:
        """`closed`, `half-open` or `open`, as of the last call."""
        return _STATE_NAMES[self._state]

    @property
    def is_open(self) -> bool:
        return self._state == OPENED

    def status(self) -> dict[str, object]:
        """The `/health` component: not ok while open (calls are refused unasked)."""
        return {"ok": not self.is_open, "state": self.state, "failures": self._failures}

    async def call(self, operation: Callable[[], Awaitable[T]]) -> T:
        """`operation()` if the circuit lets it through; `DatabaseCircuitOpen` if not."""
        breaker = await self._factory.get_breaker(_CIRCUIT)
        try:
            async with breaker:
                return await operation()
        except OpenedState as exc:
            # purgatory raises the same OpenedState instance on every refusal: drop the
            # traceback it collects, or each refusal would keep the frames of the last.
            exc.with_traceback(None)
            raise DatabaseCircuitOpen() from None

    async def probe(self, operation: Callable[[], Awaitable[T]]) -> T:
        """A health probe: the trial call of an open circuit once it may probe, but while
        the circuit is closed it neither counts nor clears failures (a cheap probe that
        succeeds says nothing about the writes that fail)."""
        if self._state == CLOSED:
            return await operation()
        return await self.call(operation)

    def _on_event(self, name: str, event_type: str, event: Event) -> None:
        if event_type == "failed":
            self._failures = getattr(event, "failure_count", self._failures + 1)
        elif event_type == "recovered":
            self._failures = 0
        elif event_type == "state_changed":
            self._state = getattr(event, "state", self._state)
            metrics.DATABASE_CIRCUIT_STATE.set(_STATE_VALUES[self._state])
            if self._state == OPENED:
                metrics.DATABASE_CIRCUIT_OPENED.inc()
            log.warning("database circuit %s", self.state, extra={"circuit": self.state})
