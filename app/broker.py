"""RabbitMQ: a process's one robust connection, the queue topology, and the publisher.

- `BrokerLink` connects in the background and keeps trying every
  `SLUICE_AMQP_RECONNECT_INTERVAL_S` until the first connection succeeds, so a process
  can start while RabbitMQ is down (it is simply not ready). From then on aio-pika's robust
  connection reconnects by itself and restores its channels, queues and consumers.
  `connected` is what the readiness probes report.
- `declare_topology` declares the durable quorum queue with its delivery limit and
  dead-letter exchange, and the dead-letter queue bound behind that exchange. Declaring is
  idempotent, so the publisher and the consumer both declare, whichever starts first.
- `BrokerPublisher` publishes persistent, mandatory messages on a confirming channel and
  returns only once the broker confirmed every one of them; anything else (a nack, a
  returned message, a timeout, no connection) raises `BrokerUnavailable`.

Foreign errors (aiormq, pamqp, OS) are mapped to `BrokerUnavailable` here and nowhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractQueue, AbstractRobustConnection
from aio_pika.exceptions import CONNECTION_EXCEPTIONS
from pamqp.commands import Basic
from pamqp.common import FieldTable

from app.config import AmqpSettings
from app.errors import BrokerUnavailable
from app.observability import metrics

log = logging.getLogger(__name__)

_CONNECT_TIMEOUT_S = 5.0


class BrokerStatus(Protocol):
    """What readiness asks of a process's use of RabbitMQ."""

    @property
    def connected(self) -> bool: ...


class BrokerLink:
    """The process's connection to RabbitMQ, established in the background."""

    def __init__(self, url: str, settings: AmqpSettings) -> None:
        self._url = url
        self._interval_s = settings.reconnect_interval_s
        self._connection: AbstractRobustConnection | None = None
        self._established = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        connection = self._connection
        return (
            connection is not None
            and not connection.is_closed
            and connection.connected.is_set()  # cleared while the robust connection reconnects
        )

    def start(self) -> None:
        self._task = asyncio.create_task(self._connect(), name="sluice-broker-connect")

    async def connection(self) -> AbstractRobustConnection:
        """The connection, once the first attempt to connect has succeeded."""
        await self._established.wait()
        assert self._connection is not None  # noqa: S101 - set before the event
        return self._connection

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._connection is not None:
            await self._connection.close()

    async def _connect(self) -> None:
        while True:
            try:
                self._connection = await aio_pika.connect_robust(
                    self._url, reconnect_interval=self._interval_s, timeout=_CONNECT_TIMEOUT_S
                )
            except CONNECTION_EXCEPTIONS as exc:
                log.warning("RabbitMQ unreachable; retrying", extra={"error": type(exc).__name__})
                await asyncio.sleep(self._interval_s)
            else:
                log.info("connected to RabbitMQ")
                self._established.set()
                return


async def declare_topology(channel: AbstractChannel, settings: AmqpSettings) -> AbstractQueue:
    """The events queue (quorum, durable, bounded redeliveries) and its dead-letter path."""
    arguments: FieldTable = {
        "x-queue-type": "quorum",
        "x-delivery-limit": settings.delivery_limit,
    }
    if settings.dead_letter_exchange:
        exchange = await channel.declare_exchange(
            settings.dead_letter_exchange, aio_pika.ExchangeType.FANOUT, durable=True
        )
        dead = await channel.declare_queue(
            settings.dead_letter_queue, durable=True, arguments={"x-queue-type": "quorum"}
        )
        await dead.bind(exchange)
        arguments["x-dead-letter-exchange"] = settings.dead_letter_exchange
    return await channel.declare_queue(settings.queue, durable=True, arguments=arguments)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message to publish: its body, content type and application headers."""

    body: bytes
    content_type: str
    headers: dict[str, str]


def _persistent(message: Outgoing) -> aio_pika.Message:
    return aio_pika.Message(
        message.body,
        content_type=message.content_type,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        headers=dict(message.headers),
    )


class BrokerPublisher:
    """Publishes to the events queue and waits for the broker's confirms."""

    def __init__(self, link: BrokerLink, settings: AmqpSettings, *, retry_after_s: int) -> None:
        self._link = link
        self._settings = settings
        self._retry_after_s = retry_after_s
        self._channel: AbstractChannel | None = None
        self._declared = False
        self._opening = asyncio.Lock()

    async def publish(self, messages: Sequence[Outgoing]) -> None:
        """Publishes each as a persistent message; returns once RabbitMQ confirmed every
        one, or raises `BrokerUnavailable`."""
        if not self._link.connected:
            raise self._unavailable("not connected to RabbitMQ")
        try:
            async with asyncio.timeout(self._settings.publish_timeout_s):
                channel = await self._open_channel()
                confirms = await asyncio.gather(
                    *(
                        channel.default_exchange.publish(
                            _persistent(message), routing_key=self._settings.queue, mandatory=True
                        )
                        for message in messages
                    ),
                    return_exceptions=True,
                )
        except (TimeoutError, *CONNECTION_EXCEPTIONS) as exc:
            raise self._unavailable(f"RabbitMQ did not confirm: {type(exc).__name__}") from exc
        refused = [c for c in confirms if not isinstance(c, Basic.Ack)]
        if refused:
            # Returned as unroutable when the queue is gone (deleted, or lost with its
            # node): declare it again before the next publish, so the next request heals it.
            self._declared = False
            raise self._unavailable(f"RabbitMQ refused {len(refused)} of {len(confirms)} messages")

    async def _open_channel(self) -> AbstractChannel:
        async with self._opening:  # concurrent requests share one channel
            if self._channel is None or self._channel.is_closed:
                connection = await self._link.connection()
                # Unroutable mandatory messages raise only with on_return_raises.
                self._channel = await connection.channel(
                    publisher_confirms=True, on_return_raises=True
                )
                self._declared = False
            if not self._declared:
                await declare_topology(self._channel, self._settings)
                self._declared = True
            return self._channel

    def _unavailable(self, message: str) -> BrokerUnavailable:
        metrics.BROKER_PUBLISH_FAILURES.inc()
        log.warning("publish not confirmed; answering 503", extra={"reason": message})
        return BrokerUnavailable(message, retry_after_s=self._retry_after_s)


async def sample_queue_depths(
    link: BrokerLink, settings: AmqpSettings, every_s: float = 5.0
) -> None:
    """Publish how many messages wait in the queue (the consumer's backlog) and in its
    dead-letter queue, every `every_s`, until cancelled: what the lag and dead-letter
    alerts read. A passive declare only reads; a broker outage skips a sample."""
    queues = {"main": settings.queue}
    if settings.dead_letter_exchange:
        queues["dead_letter"] = settings.dead_letter_queue
    while True:
        try:
            connection = await link.connection()
            async with connection.channel() as channel:
                for label, name in queues.items():
                    queue = await channel.declare_queue(name, passive=True)
                    ready = queue.declaration_result.message_count or 0
                    metrics.AMQP_QUEUE_MESSAGES.labels(queue=label).set(ready)
        except CONNECTION_EXCEPTIONS as exc:
            log.info("queue depth not sampled", extra={"error": type(exc).__name__})
        await asyncio.sleep(every_s)
