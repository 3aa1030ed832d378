"""RabbitMQ helpers for the tests and the bench: scratch vhosts, bulk publishing, depth.

The broker comes from `SLUICE_TEST_AMQP_URL` (default: this machine's RabbitMQ, guest on
the `/` vhost). Each user gets a vhost of its own (`rabbitmqctl add_vhost`), deleted
afterwards with everything in it, so queues never outlive a test even though RabbitMQ
keeps them across restarts.
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import aio_pika

from app.broker import declare_topology
from app.config import AmqpSettings

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
_PUBLISH_WINDOW = 2000  # messages awaiting confirms at once


async def broker_reachable(url: str) -> bool:
    try:
        connection = await aio_pika.connect(url, timeout=3)
    except (OSError, aio_pika.exceptions.AMQPError, TimeoutError):
        return False
    await connection.close()
    return True


def rabbitmqctl(*args: str) -> None:
    subprocess.run(  # noqa: S603 - the machine's rabbitmqctl, our arguments
        ["rabbitmqctl", "-q", *args],  # noqa: S607 - found on PATH, as the broker docs use it
        check=True,
        capture_output=True,
        timeout=60,
    )


@contextmanager
def scratch_vhost(url: str) -> Iterator[str]:
    """A vhost of our own on the broker at `url`; yields `url` pointing into it."""
    name = f"sluice-test-{uuid.uuid4().hex[:10]}"
    user = urlsplit(url).username or "guest"
    rabbitmqctl("add_vhost", name)
    try:
        rabbitmqctl("set_permissions", "-p", name, user, ".*", ".*", ".*")
        parts = urlsplit(url)
        yield urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))
    finally:
        rabbitmqctl("delete_vhost", name)


def amqp_settings(queue: str = "sluice.events", **overrides: object) -> AmqpSettings:
    return AmqpSettings(queue=queue, **overrides)  # type: ignore[arg-type]


async def publish_all(
    url: str, messages: Sequence[aio_pika.Message], settings: AmqpSettings
) -> None:
    """Publish every message with confirms, `_PUBLISH_WINDOW` in flight at a time."""
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        await declare_topology(channel, settings)
        for start in range(0, len(messages), _PUBLISH_WINDOW):
            await asyncio.gather(
                *(
                    channel.default_exchange.publish(m, routing_key=settings.queue)
                    for m in messages[start : start + _PUBLISH_WINDOW]
                )
            )
    finally:
        await connection.close()


async def queue_depth(url: str, queue: str) -> int:
    """Messages ready in `queue` (unacked ones count only once their consumer is gone)."""
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        count = declared.declaration_result.message_count
        return int(count or 0)
    finally:
        await connection.close()


def raw_message(body: bytes, message_id: str, **properties: object) -> aio_pika.Message:
    return aio_pika.Message(
        body,
        message_id=message_id,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        **properties,  # type: ignore[arg-type]
    )
