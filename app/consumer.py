"""The RabbitMQ consumer: deliveries → micro-batches → the ingest spine → ack after commit.

Run by `python -m app consume`, its own process (never inside a web worker), on the same
pipeline the web process builds (`app.main.pipeline`).

- Deliveries are gathered into micro-batches of up to `SLUICE_BATCH_MAX_SIZE`, cut when
  full or when the oldest has waited `SLUICE_BATCH_MAX_DELAY_MS`, and each is handed to
  `IngestService.ingest` with `AckMode.COMMITTED`. Several micro-batches may be in flight;
  the broker's `prefetch_count` bounds how many deliveries are unacked at once.
- A delivery is acked only after the batch holding it committed, whatever its outcome:
  stored, duplicate (a redelivery), suppressed, or rejected (its quarantine row committed
  in the same batch), so a poison message is settled, never redelivered forever.
  Acks go out in delivery order: a contiguous run of committed deliveries is acked with
  one `multiple` ack on its last tag; a delivery whose batch is still writing holds back
  the ack of later ones (never acks them early).
- A full buffer (`BufferFull`) means this process is busy, not that the messages are
  bad: the batch waits and tries again, holding its deliveries, so the consumer stops
  pulling (prefetch). Any other `Retryable` (the database is down past the write's retry
  budget) nacks the batch with requeue after an exponential backoff (up to
  `SLUICE_AMQP_RETRY_MAX_BACKOFF_S`); the queue's delivery limit bounds those retries, then
  the dead-letter exchange takes the message.
- After a reconnect the old channel's deliveries are void (the broker has requeued them);
  settling them fails quietly and their redeliveries are absorbed as duplicates.
- `stop()` cancels the subscription, writes what was gathered, waits for every batch in
  flight to commit and be acked, then closes the channel, which returns every delivery
  not taken into a batch to the queue: a SIGTERM loses nothing and stores nothing unacked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from aio_pika.exceptions import CONNECTION_EXCEPTIONS

from app.broker import BrokerLink, declare_topology
from app.config import Settings
from app.errors import BufferFull, Retryable
from app.observability import metrics
from app.pipeline.events import Candidate, Transport, Writable
from app.pipeline.ingest import AckMode, IngestService
from app.sources.amqp import AmqpDecoder, AmqpMessage

log = logging.getLogger(__name__)


@dataclass(slots=True, eq=False)
class Pending:
    """One delivery, decoded, waiting for its batch to commit."""

    delivery: AbstractIncomingMessage
    item: Candidate | Writable
    channel: object  # the channel it came on: tags are numbered per channel
    tag: int
    committed: bool = False


class Acknowledger:
    """Settles deliveries in tag order per channel: one `multiple` ack per committed run."""

    def __init__(self) -> None:
        self._open: dict[object, OrderedDict[int, Pending]] = {}

    def track(self, delivery: AbstractIncomingMessage, item: Candidate | Writable) -> Pending:
        pending = Pending(delivery, item, delivery.channel, delivery.delivery_tag or 0)
        self._open.setdefault(pending.channel, OrderedDict())[pending.tag] = pending
        return pending

    async def ack(self, batch: Sequence[Pending]) -> None:
        for pending in batch:
            pending.committed = True
        metrics.AMQP_SETTLED.labels(settlement="acked").inc(len(batch))
        await self._ack_committed_runs(batch)

    async def nack(self, batch: Sequence[Pending]) -> None:
        for pending in batch:
            opened = self._open.get(pending.channel)
            if opened is not None and opened.pop(pending.tag, None) is not None:
                metrics.AMQP_SETTLED.labels(settlement="nacked").inc()
                await _settle(pending.delivery.nack(requeue=True))
        await self._ack_committed_runs(batch)

    async def _ack_committed_runs(self, batch: Sequence[Pending]) -> None:
        for channel in {id(p.channel): p.channel for p in batch}.values():
            opened = self._open.get(channel)
            last: Pending | None = None
            while opened and (head := next(iter(opened.values()))).committed:
                last = opened.pop(head.tag)
            if opened is not None and not opened:
                del self._open[channel]
            if last is not None:
                await _settle(last.delivery.ack(multiple=True))


async def _settle(operation: Awaitable[None]) -> None:
    """Send an ack or nack; a channel that closed meanwhile means the broker requeued."""
    try:
        await operation
    except CONNECTION_EXCEPTIONS as exc:
        log.info("delivery not settled: its channel closed", extra={"error": type(exc).__name__})


class Consumer:
    def __init__(
        self,
        link: BrokerLink,
        ingest: IngestService,
        decoder: AmqpDecoder,
        settings: Settings,
    ) -> None:
        self._link = link
        self._ingest = ingest
        self._decoder = decoder
        self._amqp = settings.amqp
        self._batch_size = settings.batch.max_size
        self._max_delay_s = settings.batch.max_delay.total_seconds()
        self._prefetch = settings.amqp.prefetch_for(settings.batch)
        self._acks = Acknowledger()
        self._gathered: list[Pending] = []
        self._timer: asyncio.TimerHandle | None = None
        self._batches: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._failures = 0  # consecutive transient failures: the backoff grows with them
        self._channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self._consumer_tag: str | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        """Connected and subscribed: what the consumer process's readiness reports."""
        return self._link.connected and self._consumer_tag is not None

    def start(self) -> None:
        self._task = asyncio.create_task(self._subscribe(), name="sluice-amqp-consumer")

    async def stop(self) -> None:
        """Stop taking deliveries; commit and ack every one already taken."""
        self._stopping.set()
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._queue is not None and self._consumer_tag is not None:
            with contextlib.suppress(*CONNECTION_EXCEPTIONS):
                await self._queue.cancel(self._consumer_tag)
        self._cut()
        while self._batches:
            await asyncio.gather(*self._batches, return_exceptions=True)
        if self._channel is not None:
            with contextlib.suppress(*CONNECTION_EXCEPTIONS):
                await self._channel.close()

    async def _subscribe(self) -> None:
        """Declare and subscribe once; the robust channel re-subscribes after reconnects."""
        while True:
            connection = await self._link.connection()
            try:
                channel = await connection.channel()
                await channel.set_qos(prefetch_count=self._prefetch)
                self._queue = await declare_topology(channel, self._amqp)
                self._channel = channel
                self._consumer_tag = await self._queue.consume(self._on_delivery)
            except CONNECTION_EXCEPTIONS as exc:
                # The broker's reply (e.g. PRECONDITION_FAILED: a queue declared otherwise)
                # names queues and arguments, never message content.
                log.warning("could not subscribe; retrying", extra={"error": repr(exc)})
                await asyncio.sleep(self._amqp.reconnect_interval_s)
            else:
                log.info("consuming", extra={"queue": self._amqp.queue})
                return

    async def _on_delivery(self, delivery: AbstractIncomingMessage) -> None:
        if self._stopping.is_set():
            # Arrived after stop() drained the batches (aiormq hands each delivery to a task
            # of its own, which may run late): left unsettled, so closing the channel returns
            # it to the queue. Writing it now could commit it after its channel is gone.
            return
        message = AmqpMessage(
            body=delivery.body,
            content_type=delivery.content_type,
            message_id=delivery.message_id,
            type=delivery.type,
            timestamp=delivery.timestamp,
            headers=delivery.headers,
        )
        try:
            pending = self._acks.track(delivery, self._decoder.decode(message))
        except CONNECTION_EXCEPTIONS:
            return  # its channel closed before it was seen: the broker has requeued it
        self._gathered.append(pending)
        if len(self._gathered) >= self._batch_size:
            self._cut()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._max_delay_s, self._cut)

    def _cut(self) -> None:
        """Hand what was gathered to the pipeline as one micro-batch."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._gathered:
            batch = self._gathered[: self._batch_size]
            del self._gathered[: self._batch_size]
            task = asyncio.create_task(self._write(batch))
            self._batches.add(task)
            task.add_done_callback(self._batches.discard)

    async def _write(self, batch: list[Pending]) -> None:
        candidates = [p.item for p in batch if isinstance(p.item, Candidate)]
        forwarded = [p.item for p in batch if not isinstance(p.item, Candidate)]
        while True:
            try:
                await self._ingest.ingest(
                    candidates, transport=Transport.AMQP, ack=AckMode.COMMITTED, forwarded=forwarded
                )
            except BufferFull:
                if await self._paused(self._amqp.retry_backoff_s):
                    continue  # held, not nacked: a busy process is no fault of the message
            except Retryable as error:
                log.warning("batch not committed; nacking", extra={"code": str(error.code)})
                self._failures += 1
                await self._paused(self._backoff_s())
            except Exception:  # a bug must not strand deliveries: the delivery limit bounds it
                log.exception("batch failed unexpectedly; nacking")
            else:
                self._failures = 0
                await self._acks.ack(batch)
                return
            await self._acks.nack(batch)
            return

    def _backoff_s(self) -> float:
        growth: float = 2.0 ** (self._failures - 1)
        return min(self._amqp.retry_max_backoff_s, self._amqp.retry_backoff_s * growth)

    async def _paused(self, seconds: float) -> bool:
        """Sleep `seconds`, or less if stopping; True when the full pause was taken."""
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            return True
        return False
