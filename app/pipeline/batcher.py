"""The bounded buffer and the one batching loop per process that drains it.

Every source's events come here, through the `Buffer` sink: HTTP requests, Pub/Sub
pushes and RabbitMQ deliveries share one buffer and one commit. A wire message's
writables are `submit()`ted together and come back as a `Submission`: a waiter that
resolves, per event, only after the transaction holding the event has committed.
The loop cuts a batch when `max_size` events wait or the oldest has waited `max_delay`,
and runs up to `write_concurrency` flushes at once; events arriving while every flush
slot is busy simply join the next batch, so concurrent requests share one commit.

Backpressure is part of the contract: a submission that would take the buffer past its
event or byte capacity is refused whole with `BufferFull`, and a closing batcher refuses
with `ShuttingDown`. Capacity is released when a batch *finishes*, so events in flight
count against memory too. A failed flush fails exactly the submissions it held; nothing
else is lost, and no submission is resolved twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from opentelemetry.trace import Span

from app.clock import MonotonicClock, monotonic
from app.errors import BufferFull, Retryable, ShuttingDown, StorageUnavailable
from app.model.events import Transport, Writable
from app.model.outcomes import Outcome
from app.observability import metrics, tracing

log = logging.getLogger(__name__)

#: Writes one batch and returns an outcome per writable, in order. Raises `Retryable`
#: when the batch could not be committed before `deadline` (a `Clock` reading).
FlushFunction = Callable[[Sequence[Writable], float], Awaitable[Sequence[Outcome]]]


class Submission:
    """The waiter for one request's events; resolved once every event has an outcome."""

    __slots__ = (
        "_future",
        "_remaining",
        "deadline",
        "detached",
        "outcomes",
        "request_span",
        "retry_after_s",
        "submitted_at",
        "transport",
    )

    def __init__(
        self,
        transport: Transport,
        count: int,
        deadline: float,
        *,
        detached: bool,
        retry_after_s: int = 1,
        submitted_at: float = 0.0,
    ) -> None:
        self.transport = transport
        self.submitted_at = submitted_at  # a monotonic reading: the ack latency starts here
        self.request_span = tracing.request_span()  # what the flush links to, when tracing
        self.retry_after_s = retry_after_s
        self.deadline = deadline
        self.detached = detached  # nobody waits (`?ack=enqueued`): failures are only counted
        self.outcomes: list[Outcome | None] = [None] * count
        self._remaining = count
        self._future: asyncio.Future[list[Outcome]] = asyncio.get_running_loop().create_future()
        if count == 0:
            self._future.set_result([])

    def add_done_callback(self, callback: Callable[[Retryable | None], None]) -> None:
        """`callback(None)` once every event committed, or `callback(error)` once the write
        failed (the consumer acks or nacks its delivery from it)."""
        self._future.add_done_callback(lambda future: callback(_error_of(future)))

    async def wait(self, within_s: float) -> list[Outcome]:
        """The outcomes, or `StorageUnavailable` if they are not committed `within_s`.

        Shielded: a client that goes away does not cancel its events' write.
        """
        try:
            return await asyncio.wait_for(asyncio.shield(self._future), within_s)
        except TimeoutError:
            raise StorageUnavailable(
                "events were not committed in time", retry_after_s=self.retry_after_s
            ) from None

    def resolve(self, index: int, outcome: Outcome, now: float) -> None:
        """The event at `index` committed with `outcome` at `now` (the batcher calls this)."""
        if self._future.done():
            return
        self.outcomes[index] = outcome
        self._remaining -= 1
        if self._remaining == 0:
            metrics.ack_latency(self.transport).observe(now - self.submitted_at)
            self._future.set_result([o for o in self.outcomes if o is not None])

    def fail(self, error: Retryable) -> None:
        """The write of (some of) these events failed: every waiter is told."""
        if self._future.done():
            return
        if self.detached:  # counted per batch by the batcher; nobody is waiting to be told
            log.error("buffered events lost", extra={"code": str(error.code)})
            self._future.cancel()
            return
        self._future.set_exception(error)


def _error_of(future: asyncio.Future[list[Outcome]]) -> Retryable | None:
    if future.cancelled():  # how a detached submission fails: nobody was waiting
        return StorageUnavailable("the buffered events were not written")
    error = future.exception()
    if error is None or isinstance(error, Retryable):
        return error
    return StorageUnavailable(type(error).__name__)  # `fail` sets only `Retryable`s


@dataclass(slots=True)
class _Buffered:
    payload: Writable
    submission: Submission
    index: int
    enqueued_at: float


class Batcher:
    def __init__(
        self,
        flush: FlushFunction,
        *,
        max_size: int,
        max_delay_s: float,
        write_concurrency: int,
        max_events: int,
        max_bytes: int,
        retry_after_s: int = 1,
        clock: MonotonicClock = monotonic,
    ) -> None:
        self._flush = flush
        self._max_size = max_size
        self._max_delay_s = max_delay_s
        self._max_events = max_events
        self._max_bytes = max_bytes
        self._retry_after_s = retry_after_s
        self._clock = clock
        self._queue: deque[_Buffered] = deque()
        self._held_events = 0  # queued plus in flight
        self._held_bytes = 0
        self._slots = asyncio.Semaphore(write_concurrency)
        self._wakeup = asyncio.Event()
        self._closing = False
        self._loop_task: asyncio.Task[None] | None = None
        self._flushes: set[asyncio.Task[None]] = set()
        metrics.BUFFER_CAPACITY_EVENTS.set(max_events)
        metrics.BUFFER_CAPACITY_BYTES.set(max_bytes)

    @property
    def alive(self) -> bool:
        return self._loop_task is not None and not self._loop_task.done()

    @property
    def accepting(self) -> bool:
        return self.alive and not self._closing

    @property
    def held_events(self) -> int:
        return self._held_events

    @property
    def full(self) -> bool:
        """Not even one more event would fit: a source asks before reading and decoding a
        message, so that an overloaded process spends no CPU on events it must refuse
        anyway (`submit` still decides for the whole message)."""
        return self._held_events >= self._max_events or self._held_bytes >= self._max_bytes

    def refuse_if_full(self, transport: Transport) -> None:
        """Raise `BufferFull` now if the buffer is `full` (counted as a refusal)."""
        if self.full:
            raise self._refusal(transport)

    def count_refusal(self, transport: Transport) -> None:
        """A message refused for a full buffer by a source that answers it itself (the HTTP
        gate, `api/admission.py`, sends a prebuilt 429 instead of raising `BufferFull`)."""
        metrics.buffer_refusals(transport).inc()

    def _refusal(self, transport: Transport) -> BufferFull:
        self.count_refusal(transport)
        return BufferFull(retry_after_s=self._retry_after_s)

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._run(), name="sluice-batcher")

    def submit(
        self,
        payloads: Sequence[Writable],
        transport: Transport,
        *,
        deadline: float,
        detached: bool = False,
    ) -> Submission:
        """Buffer `payloads` whole or not at all; raises `BufferFull` or `ShuttingDown`."""
        if self._closing or not self.alive:
            raise ShuttingDown(retry_after_s=self._retry_after_s)
        size = sum(payload.size for payload in payloads)
        if (
            self._held_events + len(payloads) > self._max_events
            or self._held_bytes + size > self._max_bytes
        ):
            raise self._refusal(transport)
        now = self._clock()
        submission = Submission(
            transport,
            len(payloads),
            deadline,
            detached=detached,
            retry_after_s=self._retry_after_s,
            submitted_at=now,
        )
        was_empty = not self._queue
        for index, payload in enumerate(payloads):
            self._queue.append(_Buffered(payload, submission, index, now))
        self._held_events += len(payloads)
        self._held_bytes += size
        self._publish_depth()
        if was_empty or len(self._queue) >= self._max_size:
            self._wakeup.set()
        return submission

    async def close(self) -> None:
        """Refuse new submissions, flush everything buffered, wait for every flush."""
        self._closing = True
        self._wakeup.set()
        if self._loop_task is not None:
            await self._loop_task
        while self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)

    async def _run(self) -> None:
        while self._queue or not self._closing:
            if not self._queue:
                await self._sleep(None)
                continue
            if len(self._queue) < self._max_size and not self._closing:
                wait = self._queue[0].enqueued_at + self._max_delay_s - self._clock()
                if wait > 0:
                    await self._sleep(wait)
                    continue
            await self._slots.acquire()
            batch = [self._queue.popleft() for _ in range(min(self._max_size, len(self._queue)))]
            task = asyncio.create_task(self._write(batch))
            self._flushes.add(task)
            task.add_done_callback(self._flushes.discard)

    async def _sleep(self, seconds: float | None) -> None:
        """Until `submit` or `close` wakes the loop, or `seconds` pass."""
        self._wakeup.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), seconds)

    async def _write(self, batch: list[_Buffered]) -> None:
        try:
            deadline = min(pending.submission.deadline for pending in batch)
            with tracing.flush_span(self._request_spans(batch), len(batch)):
                outcomes = await self._flush([pending.payload for pending in batch], deadline)
            resolved = list(zip(batch, outcomes, strict=True))
        except Retryable as error:
            self._fail(batch, error)
        except Exception as exc:  # a bug must not strand waiters; they get a retryable 503
            log.exception("flush failed unexpectedly")
            self._fail(batch, StorageUnavailable(str(type(exc).__name__)))
        else:
            metrics.count_outcomes(
                (outcome, pending.submission.transport) for pending, outcome in resolved
            )
            now = self._clock()
            for pending, outcome in resolved:
                pending.submission.resolve(pending.index, outcome, now)
        finally:
            self._release(batch)
            self._slots.release()

    @staticmethod
    def _request_spans(batch: list[_Buffered]) -> list[Span | None]:
        if not tracing.enabled():  # no per-event work when tracing is off
            return []
        return [p.submission.request_span for p in batch]

    def _fail(self, batch: list[_Buffered], error: Retryable) -> None:
        error.retry_after_s = self._retry_after_s
        lost = Counter(p.submission.transport for p in batch if p.submission.detached)
        for transport, count in lost.items():
            metrics.EVENTS_LOST.labels(source=transport).inc(count)
        for submission in {id(p.submission): p.submission for p in batch}.values():
            submission.fail(error)

    def _release(self, batch: list[_Buffered]) -> None:
        self._held_events -= len(batch)
        self._held_bytes -= sum(pending.payload.size for pending in batch)
        self._publish_depth()

    def _publish_depth(self) -> None:
        metrics.BUFFER_EVENTS.set(self._held_events)
        metrics.BUFFER_BYTES.set(self._held_bytes)
