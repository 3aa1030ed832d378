"""The RabbitMQ consumer: each delivery → the pipeline → ack after its commit.

Run by `python -m app consume`, its own process (never inside a web worker), on the same
pipeline the web process builds (`app.main.pipeline`). It has no batching of its own:
each delivery is decoded and submitted as one message to the process's `Batcher`, which
cuts batches for every source alike; the broker's `prefetch_count` bounds how many
deliveries are unacked at once.

- A delivery is acked only after the batch holding it committed, whatever its outcome:
  stored, duplicate (a redelivery), suppressed, or rejected (its quarantine row committed
  in the same batch), so a poison message is settled, never redelivered forever.
  Acks go out in delivery order: a contiguous run of committed deliveries is acked with
  one `multiple` ack on its last tag (all the deliveries one batch commits settle
  together); a delivery whose batch is still writing holds back the ack of later ones
  (never acks them early).
- Messages another Sluice process prepared (broker-backed HTTP mode) are told apart by
  their content type and go in as the signed writables they carry
  (`pipeline/forwarding.py`); one whose signature fails is quarantined.
- A full buffer (`BufferFull`) means this process is busy, not that the message is bad:
  the delivery waits and is submitted again, held, so the consumer stops pulling
  (prefetch). Any other `Retryable` (the database is down past the write's retry budget)
  nacks the delivery with requeue after an exponential backoff (up to
  `SLUICE_AMQP_RETRY_MAX_BACKOFF_S`); the queue's delivery limit bounds those retries,
  then the dead-letter exchange takes the message.
- After a reconnect the old channel's deliveries are void (the broker has requeued them);
  settling them fails quietly and their redeliveries are absorbed as duplicates.
- `stop()` cancels the subscription, waits until every delivery taken is committed and
  acked (or nacked), then closes the channel, which returns every delivery not taken to
  the queue: a SIGTERM loses nothing and stores nothing unacked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable
from dataclasses import dataclass

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from aio_pika.exceptions import CONNECTION_EXCEPTIONS

from app.broker import BrokerLink, declare_topology, sample_queue_depths
from app.config import Settings
from app.errors import BufferFull, RequestRejected, Retryable
from app.model.events import Candidate, Transport, Writable
from app.observability import metrics, tracing
from app.pipeline import forwarding
from app.pipeline.forwarding import ForwardedDecoder
from app.pipeline.ingest import Pipeline
from app.pipeline.message import Message
from app.sources.amqp import AmqpDecoder, AmqpMessage

log = logging.getLogger(__name__)

# Every failed delivery doubles the pause once; past this the ceiling holds anyway.
_MAX_DOUBLINGS = 16


@dataclass(slots=True, eq=False)
class Unsettled:
    """One delivery taken, not yet acked or nacked."""

    delivery: AbstractIncomingMessage
    channel: object  # the channel it came on: tags are numbered per channel
    tag: int
    committed: bool = False


class Acknowledger:
    """Settles deliveries in tag order per channel: one `multiple` ack per committed run.

    Commits are marked as they are reported; the runs they complete are acked once the
    deliveries reported together (one batch's) are all marked, so a batch of deliveries
    costs one ack, not one per delivery. Every ack and nack is sent under one lock, in the
    order it was decided: a `multiple` ack decided after a nack must not reach the broker
    before it, or it would ack the nacked delivery (and the nack then close the channel)."""

    def __init__(self) -> None:
        self._open: dict[object, OrderedDict[int, Unsettled]] = {}
        self._count = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._acking: asyncio.Task[None] | None = None
        self._ack_again = False
        self._settling = asyncio.Lock()

    def track(self, delivery: AbstractIncomingMessage) -> Unsettled:
        unsettled = Unsettled(delivery, delivery.channel, delivery.delivery_tag or 0)
        self._open.setdefault(unsettled.channel, OrderedDict())[unsettled.tag] = unsettled
        self._count += 1
        metrics.AMQP_UNACKED.set(self._count)
        self._idle.clear()
        return unsettled

    def committed(self, unsettled: Unsettled) -> None:
        unsettled.committed = True
        self._schedule_acks()

    async def nack(self, unsettled: Unsettled) -> None:
        async with self._settling:
            opened = self._open.get(unsettled.channel)
            if opened is not None and opened.pop(unsettled.tag, None) is not None:
                self._settled(1)
                metrics.AMQP_SETTLED.labels(settlement="nacked").inc()
                await _settle(unsettled.delivery.nack(requeue=True))
        self._schedule_acks()  # committed deliveries behind this one may now go

    def _schedule_acks(self) -> None:
        # Scheduled, not run now: the other deliveries of the same batch are reported in
        # the same turn of the loop, and join this run.
        if self._acking is None:
            self._acking = asyncio.get_running_loop().create_task(self._ack_runs())
        else:
            self._ack_again = True

    async def idle(self) -> None:
        """Until every tracked delivery is settled."""
        await self._idle.wait()

    async def _ack_runs(self) -> None:
        try:
            while True:
                self._ack_again = False
                for channel in list(self._open):
                    await self._ack_committed_run(channel)
                if not self._ack_again:
                    return
        finally:
            self._acking = None

    async def _ack_committed_run(self, channel: object) -> None:
        async with self._settling:
            opened = self._open.get(channel)
            last: Unsettled | None = None
            count = 0
            while opened and (head := next(iter(opened.values()))).committed:
                last = opened.pop(head.tag)
                count += 1
            if opened is not None and not opened:
                del self._open[channel]
            if last is not None:
                self._settled(count)
                metrics.AMQP_SETTLED.labels(settlement="acked").inc(count)
                await _settle(last.delivery.ack(multiple=True))

    def _settled(self, count: int) -> None:
        self._count -= count
        metrics.AMQP_UNACKED.set(self._count)
        if self._count == 0:
            self._idle.set()


async def _settle(operation: Awaitable[None]) -> None:
    """Send an ack or nack; a channel that closed meanwhile means the broker requeued."""
    try:
        await operation
    except CONNECTION_EXCEPTIONS as exc:
        log.info("delivery not settled: its channel closed", extra={"error": type(exc).__name__})


@dataclass(frozen=True, slots=True)
class DeliveryDecoder:
    """What a delivery holds: CloudEvents to prepare, or the writables another Sluice
    process prepared (told apart by content type); a forwarded message that cannot be
    trusted or read becomes a rejected candidate, quarantined like any other."""

    events: AmqpDecoder
    forwarded: ForwardedDecoder

    def decode(self, wire: AmqpMessage) -> tuple[list[Candidate], list[Writable]]:
        if not forwarding.is_forwarded(wire):
            return self.events.decode(wire), []
        try:
            return [], self.forwarded.decode(wire)
        except RequestRejected as rejected:
            return self.events.rejected(wire, rejected), []


class Consumer:
    def __init__(
        self,
        link: BrokerLink,
        pipeline: Pipeline,
        decoder: DeliveryDecoder,
        settings: Settings,
    ) -> None:
        self._link = link
        self._pipeline = pipeline
        self._decoder = decoder
        self._amqp = settings.amqp
        self._prefetch = settings.amqp.prefetch_for(settings.batch)
        self._acks = Acknowledger()
        self._stopping = asyncio.Event()
        self._failures = 0  # consecutive transient failures: the backoff grows with them
        self._channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self._consumer_tag: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._sampler: asyncio.Task[None] | None = None
        self._retries: set[asyncio.Task[None]] = set()

    @property
    def connected(self) -> bool:
        """Connected and subscribed: what the consumer process's readiness reports."""
        return self._link.connected and self._consumer_tag is not None

    def start(self) -> None:
        self._task = asyncio.create_task(self._subscribe(), name="sluice-amqp-consumer")
        self._sampler = asyncio.create_task(
            sample_queue_depths(self._link, self._amqp), name="sluice-amqp-depths"
        )

    async def stop(self) -> None:
        """Stop taking deliveries; commit and ack every one already taken."""
        self._stopping.set()
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._queue is not None and self._consumer_tag is not None:
            with contextlib.suppress(*CONNECTION_EXCEPTIONS):
                await self._queue.cancel(self._consumer_tag)
        await self._acks.idle()
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
            # Arrived after stop() began (aiormq hands each delivery to a task of its own,
            # which may run late): left unsettled, so closing the channel returns it to
            # the queue. Writing it now could commit it after its channel is gone.
            return
        try:
            unsettled = self._acks.track(delivery)
        except CONNECTION_EXCEPTIONS:
            return  # its channel closed before it was seen: the broker has requeued it
        if delivery.redelivered:
            metrics.AMQP_REDELIVERED.inc()
        wire = AmqpMessage(
            body=delivery.body,
            content_type=delivery.content_type,
            message_id=delivery.message_id,
            type=delivery.type,
            timestamp=delivery.timestamp,
            headers=delivery.headers,
        )
        with tracing.delivery_span(delivery.headers, self._amqp.queue):
            await self._submit(unsettled, self._message_of(wire))

    def _message_of(self, wire: AmqpMessage) -> Message[Candidate]:
        """Forwarded writables have nothing left to prepare: they ride as finished."""
        candidates, writables = self._decoder.decode(wire)
        count = len(candidates) + len(writables)
        ticket = self._pipeline.ticket([(None, None)] * count, Transport.AMQP)
        message = Message.of(ticket, candidates)
        for position, writable in enumerate(writables, start=len(candidates)):
            message.finish(position, writable)
        return message

    async def _submit(self, unsettled: Unsettled, message: Message[Candidate]) -> None:
        while True:
            try:
                await self._pipeline.submit(message)
            except BufferFull:
                if await self._paused(self._amqp.retry_backoff_s):
                    continue  # held, not nacked: a busy process is no fault of the message
            except Retryable as error:
                await self._nack_later(unsettled, error)
                return
            except Exception:  # a bug must not strand deliveries: the delivery limit bounds it
                log.exception("delivery failed unexpectedly; nacking")
            else:
                message.ticket.when_settled(lambda error: self._settled(unsettled, error))
                return
            await self._acks.nack(unsettled)
            return

    def _settled(self, unsettled: Unsettled, error: Retryable | None) -> None:
        if error is None:
            self._failures = 0
            self._acks.committed(unsettled)
            return
        task = asyncio.get_running_loop().create_task(self._nack_later(unsettled, error))
        self._retries.add(task)
        task.add_done_callback(self._retries.discard)

    async def _nack_later(self, unsettled: Unsettled, error: Retryable) -> None:
        log.warning("delivery not committed; nacking", extra={"code": str(error.code)})
        self._failures += 1
        await self._paused(self._backoff_s())
        await self._acks.nack(unsettled)

    def _backoff_s(self) -> float:
        growth: float = 2.0 ** min(self._failures - 1, _MAX_DOUBLINGS)
        return min(self._amqp.retry_max_backoff_s, self._amqp.retry_backoff_s * growth)

    async def _paused(self, seconds: float) -> bool:
        """Sleep `seconds`, or less if stopping; True when the full pause was taken."""
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            return True
        return False
