"""Consumer throughput: a pre-filled queue drained by `python -m app consume`.

A vhost of the bench's own (deleted afterwards) on the RabbitMQ at `SLUICE_BENCH_AMQP_URL`
(default: this machine's, guest/guest) gets `--consumer-messages` persistent structured
CloudEvents, the same events the HTTP load sends, published with confirms before the clock
starts. The consumer then starts as a child process; the clock runs from its readiness
(broker and database connected) until the last event is committed. Result: events/s,
beside the HTTP figure and the COPY ceiling.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass

import aio_pika
import asyncpg

from bench.events import batch_body
from tests.broker_support import (
    DEFAULT_AMQP_URL,
    amqp_settings,
    broker_reachable,
    publish_all,
    scratch_vhost,
)
from tests.support import served

_DRAIN_TIMEOUT_S = 600.0


@dataclass(frozen=True, slots=True)
class ConsumerRun:
    messages: int
    stored: int
    seconds: float

    @property
    def events_per_s(self) -> float:
        return self.stored / self.seconds if self.seconds > 0 else 0.0


def broker_url() -> str | None:
    """The broker to use, or None when it is unreachable (the figure is then left out)."""
    url = os.environ.get("SLUICE_BENCH_AMQP_URL", DEFAULT_AMQP_URL)
    return url if asyncio.run(broker_reachable(url)) else None


def measure_consumer(broker: str, database_url: str, *, messages: int, run_tag: str) -> ConsumerRun:
    source = f"/bench/{run_tag}/amqp"
    settings = amqp_settings(f"bench-{run_tag}", dead_letter_exchange=f"bench-{run_tag}.dlx")
    with scratch_vhost(broker) as url:
        asyncio.run(publish_all(url, _messages(source, messages), settings))
        env = {
            "DATABASE_URL": database_url,
            "AMQP_URL": url,
            "SLUICE_AMQP_QUEUE": settings.queue,
            "SLUICE_AMQP_DEAD_LETTER_EXCHANGE": settings.dead_letter_exchange,
            "SLUICE_LOG_LEVEL": os.environ.get("SLUICE_LOG_LEVEL", "WARNING"),
        }
        with served(env, command="consume", probe="ready", timeout_s=60):
            started = time.monotonic()
            stored = asyncio.run(_drained(database_url, source, messages))
            seconds = time.monotonic() - started
    return ConsumerRun(messages=messages, stored=stored, seconds=seconds)


def _messages(source: str, count: int) -> list[aio_pika.Message]:
    return [
        aio_pika.Message(
            batch_body(source, n, 1)[1:-1],  # one event of the HTTP load's shape
            content_type="application/cloudevents+json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=str(n),
        )
        for n in range(count)
    ]


async def _drained(database_url: str, source: str, expected: int) -> int:
    connection = await asyncpg.connect(database_url)
    try:
        deadline = time.monotonic() + _DRAIN_TIMEOUT_S
        stored = 0
        while stored < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            stored = await connection.fetchval(
                "SELECT count(*) FROM events WHERE source = $1", source
            )
        return int(stored)
    finally:
        await connection.close()
