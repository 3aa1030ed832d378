"""The RabbitMQ consumer: deliveries → the pipeline → ack after their commit.

Run by `python -m app consume`, its own process (never inside a web worker), on the same
pipeline the web process builds (`app.main.pipeline`). It has no batching of its own: the
deliveries that arrive within `SLUICE_AMQP_GROUP_WINDOW_MS` of a group's start (until
they hold `SLUICE_BATCH_MAX_SIZE` events; the group goes as soon as it is full) are
decoded and submitted as one message to the process's `Batcher`, which cuts batches for
every source alike; the broker's `prefetch_count` bounds how many deliveries are unacked
at once. Grouping changes what a delivery costs, not what happens to it: each is still
acked, nacked or quarantined on its own, in delivery order. A batch message
(`application/cloudevents-batch+json`, `sources/amqp.py`) is one delivery of many
events: it is acked once every one of them committed, each stored, duplicate or
quarantined on its own. It consumes on the aiormq channel under aio-pika's robust one
(aio-pika's message object per delivery cost more than the rest of the consumer's work;
docs/benchmarks.md, *Consumer*).

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
- A full buffer (`BufferFull`) means this process is busy, not that the messages are bad:
  the group waits and is submitted again, held (and the groups after it), so the
  consumer stops pulling (prefetch). Any other `Retryable` (the database is down past the
  write's retry budget) nacks each of the group's deliveries with requeue after an
  exponential backoff (up to
  `SLUICE_AMQP_RETRY_MAX_BACKOFF_S`); the queue's delivery limit bounds those retries,
  then the dead-letter exchange takes the message.
- After a reconnect the old channel's deliveries are void (the broker has requeued them);
  settling them fails quietly and their redeliveries are absorbed as duplicates. The
  robust channel declares the queue again and the consumer subscribes again; a
  subscription the broker cancels (the queue was deleted) is declared and made again.
- `stop()` cancels the subscription, waits until every delivery taken is committed and
  acked (or nacked), then closes the channel, which returns every delivery not taken to
  the queue: a SIGTERM loses nothing and stores nothing unacked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict, deque
from collections.abc import Awaitable
from dataclasses import dataclass, field
from functools import partial

from aio_pika.abc import AbstractChannel, AbstractRobustChannel
from aio_pika.exceptions import CONNECTION_EXCEPTIONS
from aiormq.abc import AbstractChannel as RawChannel
from aiormq.abc import DeliveredMessage
from pamqp.commands import Basic

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

# Every failed group doubles the pause once; past this the ceiling holds anyway.
_MAX_DOUBLINGS = 16
# A delivery's events answer only through its ack: their ids are not kept on the ticket.
_UNNAMED: list[tuple[str | None, str | None]] = [(None, None)]


@dataclass(slots=True, eq=False)
class Unsettled:
    """One delivery taken, not yet acked or nacked."""

    delivery: DeliveredMessage
    channel: RawChannel  # the channel it came on: tags are numbered per channel
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
        self._open: dict[RawChannel, OrderedDict[int, Unsettled]] = {}
        self._count = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._acking: asyncio.Task[None] | None = None
        self._ack_again = False
        self._settling = asyncio.Lock()

    def track(self, delivery: DeliveredMessage) -> Unsettled:
        unsettled = Unsettled(delivery, delivery.channel, delivery.delivery_tag or 0)
        self._open.setdefault(unsettled.channel, OrderedDict())[unsettled.tag] = unsettled
        self._count += 1
        metrics.AMQP_UNACKED.set(self._count)
        self._idle.clear()
        return unsettled

    def committed(self, group: list[Unsettled]) -> None:
        for unsettled in group:
            unsettled.committed = True
        self._schedule_acks()

    async def nack(self, group: list[Unsettled]) -> None:
        """Back to the queue, each on its own (a `multiple` nack would take others along)."""
        async with self._settling:
            for unsettled in group:
                opened = self._open.get(unsettled.channel)
                if opened is not None and opened.pop(unsettled.tag, None) is not None:
                    self._settled(1)
                    metrics.AMQP_SETTLED.labels(settlement="nacked").inc()
                    await _settle(unsettled.channel.basic_nack(unsettled.tag, requeue=True))
        self._schedule_acks()  # committed deliveries behind these may now go

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

    async def _ack_committed_run(self, channel: RawChannel) -> None:
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
                await _settle(channel.basic_ack(last.tag, multiple=True))

    def _settled(self, count: int) -> None:
        self._count -= count
        metrics.AMQP_UNACKED.set(self._count)
        if self._count == 0:
            self._idle.set()


async def _settle(operation: Awaitable[object]) -> None:
    """Send an ack or nack; a channel that closed meanwhile means the broker requeued."""
    try:
        await operation
    except CONNECTION_EXCEPTIONS as exc:
        log.info("delivery not settled: its channel closed", extra={"error": type(exc).__name__})


@dataclass(slots=True, eq=False)
class _Group:
    """Deliveries gathered into one pipeline message, with what they decoded to."""

    deliveries: list[Unsettled] = field(default_factory=list)
    candidates: list[Candidate] = field(default_factory=list)
    writables: list[Writable] = field(default_factory=list)
    broken: list[Unsettled] = field(default_factory=list)  # decoding raised: nacked

    @property
    def events(self) -> int:
        return len(self.candidates) + len(self.writables)


def _wire(delivery: DeliveredMessage) -> AmqpMessage:
    properties = delivery.header.properties
    return AmqpMessage(
        body=delivery.body,
        content_type=properties.content_type,
        message_id=properties.message_id,
        type=properties.message_type,
        timestamp=properties.timestamp,
        headers=properties.headers,
    )


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
        # A group holds one batch's worth of events (one delivery's may hold more): a failed
        # flush then nacks only its own deliveries.
        self._group_size = settings.batch.max_size
        self._window_s = settings.amqp.group_window_ms / 1000
        self._gathering: asyncio.Future[None] | None = None  # the group waits for more
        self._wanted = self._group_size  # arrivals that surely fill the group being gathered
        self._groups = 0  # groups and deliveries submitted: their mean is logged at stop
        self._grouped = 0
        self._acks = Acknowledger()
        # Events submitted and not yet settled. Prefetch counts deliveries, and batch
        # messages make a prefetch window far more events than the buffer holds: without
        # this bound the buffer fills and every group then waits out a BufferFull pause.
        self._in_flight = 0
        self._max_in_flight = min(
            settings.batch.buffer_max_events,
            (settings.batch.write_concurrency + 2) * settings.batch.max_size,
        )
        self._room = asyncio.Event()
        self._room.set()
        self._stopping = asyncio.Event()
        self._failures = 0  # consecutive transient failures: the backoff grows with them
        self._channel: AbstractChannel | None = None
        self._raw: RawChannel | None = None  # the aiormq channel consumed on
        self._consumer_tag: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._resubscribing: asyncio.Task[None] | None = None
        self._sampler: asyncio.Task[None] | None = None
        self._retries: set[asyncio.Task[None]] = set()
        self._arrived: deque[Unsettled] = deque()  # taken, not yet submitted, in tag order
        self._submitter: asyncio.Task[None] | None = None

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
        self._gathered()  # the group being gathered goes now: nothing more will join it
        for task in (self._sampler, self._task, self._resubscribing):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._raw is not None and self._consumer_tag is not None:
            with contextlib.suppress(*CONNECTION_EXCEPTIONS):
                await self._raw.basic_cancel(self._consumer_tag)
        await self._acks.idle()
        log.info(
            "deliveries settled",
            extra={"groups": self._groups, "deliveries": self._grouped},
        )
        if self._channel is not None:
            with contextlib.suppress(*CONNECTION_EXCEPTIONS):
                await self._channel.close()

    async def _subscribe(self) -> None:
        """Declare and subscribe once; after a reconnect the robust channel declares again
        and `_on_reopen` subscribes again."""
        while True:
            connection = await self._link.connection()
            try:
                channel = await connection.channel()
                await channel.set_qos(prefetch_count=self._prefetch)
                queue = await declare_topology(channel, self._amqp)
                self._channel = channel
                channel.reopen_callbacks.add(self._on_reopen)
                await self._consume(channel, queue.name)
            except CONNECTION_EXCEPTIONS as exc:
                # The broker's reply (e.g. PRECONDITION_FAILED: a queue declared otherwise)
                # names queues and arguments, never message content.
                log.warning("could not subscribe; retrying", extra={"error": repr(exc)})
                await asyncio.sleep(self._amqp.reconnect_interval_s)
            else:
                log.info("consuming", extra={"queue": self._amqp.queue})
                return

    async def _consume(self, channel: AbstractChannel, queue: str) -> None:
        """Consume on the channel's aiormq channel: aio-pika's per-delivery message object
        and task cost more than everything else the consumer does for a delivery."""
        raw = await channel.get_underlay_channel()
        raw.on_consumer_cancel_callbacks.add(self._on_cancelled)
        consuming = await raw.basic_consume(queue, self._on_delivery)
        self._raw = raw
        self._consumer_tag = consuming.consumer_tag

    def _on_reopen(self, channel: AbstractRobustChannel | None) -> None:
        """The robust channel reopened (a reconnect) and declared the queue again: its old
        deliveries are void, the subscription is to be made again."""
        if channel is not None:
            self._resubscribe(channel, declare=False)

    def _on_cancelled(self, frame: Basic.Cancel) -> None:
        """The broker cancelled the subscription (e.g. the queue was deleted)."""
        if frame.consumer_tag == self._consumer_tag and self._channel is not None:
            self._resubscribe(self._channel, declare=True)

    def _resubscribe(self, channel: AbstractChannel, *, declare: bool) -> None:
        self._consumer_tag = None  # not ready until subscribed again
        if self._stopping.is_set():
            return
        if self._resubscribing is not None:
            self._resubscribing.cancel()
        self._resubscribing = asyncio.get_running_loop().create_task(
            self._subscribe_again(channel, declare=declare), name="sluice-amqp-resubscribe"
        )

    async def _subscribe_again(self, channel: AbstractChannel, *, declare: bool) -> None:
        while not self._stopping.is_set():
            try:
                queue = self._amqp.queue
                if declare:
                    queue = (await declare_topology(channel, self._amqp)).name
                await self._consume(channel, queue)
            except CONNECTION_EXCEPTIONS as exc:
                log.warning("could not subscribe again; retrying", extra={"error": repr(exc)})
                await asyncio.sleep(self._amqp.reconnect_interval_s)
            else:
                log.info("consuming again", extra={"queue": self._amqp.queue})
                return

    async def _on_delivery(self, delivery: DeliveredMessage) -> None:
        """Take the delivery (aiormq runs this in a task of its own); the deliveries that
        arrive in one turn of the loop are submitted together (`_submit_arrived`)."""
        if self._stopping.is_set():
            # Arrived after stop() began (its task may run late): left unsettled, so
            # closing the channel returns it to the queue. Writing it now could commit it
            # after its channel is gone.
            return
        unsettled = self._acks.track(delivery)
        if delivery.redelivered:
            metrics.AMQP_REDELIVERED.inc()
        self._arrived.append(unsettled)
        if self._submitter is None:
            self._submitter = asyncio.get_running_loop().create_task(self._submit_arrived())
        elif len(self._arrived) >= self._wanted:
            self._gathered()

    async def _submit_arrived(self) -> None:
        """One group after the other, in delivery order: a group held by a full buffer
        holds the later ones too (the consumer stops pulling once prefetch is reached)."""
        try:
            while self._arrived:
                await self._until_room()
                group = await self._gather()
                self._groups += 1
                self._grouped += len(group.deliveries)
                await self._submit(group)
        finally:
            self._submitter = None

    async def _until_room(self) -> None:
        """Until one more group's events fit in flight (the first always does)."""
        while self._in_flight and self._in_flight + self._group_size > self._max_in_flight:
            self._room.clear()
            await self._room.wait()

    async def _gather(self) -> _Group:
        """Deliveries, decoded as they join, until the group holds `SLUICE_BATCH_MAX_SIZE`
        events or the window has passed: a socket read holds only a few deliveries, and
        the pipeline's costs per message (ticket, steps, timers, submission) are paid once
        per group (docs/benchmarks.md, *Consumer*). Counted in events, not deliveries, so
        that a group of batch messages stays one batch's worth too; only the group being
        gathered is decoded, so a held group keeps the rest raw (prefetch bounds those)."""
        group = _Group()
        self._take(group)
        if self._window_s <= 0:
            return group
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._window_s
        while group.events < self._group_size and not self._stopping.is_set():
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            # Each delivery holds at least one event (or is quarantined as one): woken once
            # this many have arrived, the group is surely full.
            self._wanted = self._group_size - group.events
            self._gathering = gathering = loop.create_future()
            timer = loop.call_later(remaining, self._gathered)
            try:
                await gathering
            finally:
                timer.cancel()
                self._gathering = None
            self._take(group)
        return group

    def _take(self, group: _Group) -> None:
        """Move arrived deliveries into `group`, decoded, until it holds a batch's worth."""
        while self._arrived and group.events < self._group_size:
            unsettled = self._arrived.popleft()
            try:
                decoded, forwarded = self._decoder.decode(_wire(unsettled.delivery))
            except Exception:  # a bug must not strand the delivery: the delivery limit bounds it
                log.exception("a delivery failed to decode unexpectedly; nacking")
                group.broken.append(unsettled)
                continue
            group.deliveries.append(unsettled)
            group.candidates += decoded
            group.writables += forwarded

    def _gathered(self) -> None:
        """The group being gathered may be complete (enough arrived, its window passed, or
        stopping)."""
        if self._gathering is not None and not self._gathering.done():
            self._gathering.set_result(None)

    def _message_of(self, group: _Group) -> Message[Candidate]:
        """The group's events as one message; forwarded writables have nothing left to
        prepare: they ride as finished."""
        ticket = self._pipeline.ticket(_UNNAMED * group.events, Transport.AMQP)
        message = Message.of(ticket, group.candidates)
        for position, writable in enumerate(group.writables, start=len(group.candidates)):
            message.finish(position, writable)
        return message

    async def _submit(self, group: _Group) -> None:
        if group.broken:
            await self._acks.nack(group.broken)
        deliveries = group.deliveries
        if not deliveries:
            return
        try:
            message = self._message_of(group)
            while True:
                try:
                    with self._span(deliveries):
                        await self._pipeline.submit(message)
                except BufferFull:
                    # Held, not nacked: a busy process is no fault of the messages.
                    if not await self._paused(self._amqp.retry_backoff_s):
                        break  # stopping while held: back to the queue
                except Retryable as error:
                    self._nack_later(deliveries, error)
                    return
                else:
                    self._in_flight += group.events
                    message.ticket.when_settled(partial(self._settled, deliveries, group.events))
                    return
        except Exception:  # a bug must not strand deliveries: the delivery limit bounds it
            log.exception("deliveries failed unexpectedly; nacking")
        await self._acks.nack(deliveries)

    def _span(self, group: list[Unsettled]) -> contextlib.AbstractContextManager[None]:
        if not tracing.enabled():  # no per-delivery work when tracing is off
            return contextlib.nullcontext()
        headers = [unsettled.delivery.header.properties.headers for unsettled in group]
        return tracing.deliveries_span(headers, self._amqp.queue)

    def _settled(self, group: list[Unsettled], events: int, error: Retryable | None) -> None:
        self._in_flight -= events
        self._room.set()
        if error is None:
            self._failures = 0
            self._acks.committed(group)
        else:
            self._nack_later(group, error)

    def _nack_later(self, group: list[Unsettled], error: Retryable) -> None:
        task = asyncio.get_running_loop().create_task(self._nack_after_backoff(group, error))
        self._retries.add(task)
        task.add_done_callback(self._retries.discard)

    async def _nack_after_backoff(self, group: list[Unsettled], error: Retryable) -> None:
        log.warning(
            "deliveries not committed; nacking",
            extra={"code": str(error.code), "deliveries": len(group)},
        )
        self._failures += 1
        await self._paused(self._backoff_s())
        await self._acks.nack(group)

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
