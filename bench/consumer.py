"""Consumer throughput: a pre-filled queue drained by `python -m app consume`.

A vhost of the bench's own (deleted afterwards) on the RabbitMQ at `SLUICE_BENCH_AMQP_URL`
(default: this machine's, guest/guest) gets `--consumer-messages` persistent structured
CloudEvents, the same events the HTTP load sends, published with confirms before the clock
starts. Then `--consumers` consumer processes start (as many as the HTTP run's workers by
default, so the two figures use the same number of processes); the clock runs from their
readiness (broker and database connected, subscribed) until the last event is committed;
what the first consumers stored while the later ones started is left out of the figure.
Result: events/s, beside the HTTP figure and the COPY ceiling.
"""

from __future__ import annotations

import asyncio
import os
import time
from contextlib import ExitStack
from dataclasses import dataclass

import aio_pika
import asyncpg

from bench.events import batch_body
from bench.server import CONTRACTS_DIR
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
    processes: int
    messages: int
    stored: int
    measured: int  # stored while the clock ran
    seconds: float

    @property
    def events_per_s(self) -> float:
        return self.measured / self.seconds if self.seconds > 0 else 0.0


def broker_url() -> str | None:
    """The broker to use, or None when it is unreachable (the figure is then left out)."""
    url = os.environ.get("SLUICE_BENCH_AMQP_URL", DEFAULT_AMQP_URL)
    return url if asyncio.run(broker_reachable(url)) else None


def measure_consumer(
    broker: str, database_url: str, *, messages: int, processes: int, run_tag: str
) -> ConsumerRun:
    source = f"/bench/{run_tag}/amqp"
    settings = amqp_settings(f"bench-{run_tag}", dead_letter_exchange=f"bench-{run_tag}.dlx")
    with scratch_vhost(broker) as url:
        asyncio.run(publish_all(url, _messages(source, messages), settings))
        env = {
            "DATABASE_URL": database_url,
            "AMQP_URL": url,
            "SLUICE_AMQP_QUEUE": settings.queue,
            "SLUICE_AMQP_DEAD_LETTER_EXCHANGE": settings.dead_letter_exchange,
            # The same contract as the HTTP service checks: both figures pay for it.
            "SLUICE_CONTRACTS_DIR": os.environ.get("SLUICE_CONTRACTS_DIR", str(CONTRACTS_DIR)),
        }
        with ExitStack() as consumers:
            for _ in range(processes):
                consumers.enter_context(served(env, command="consume", probe="ready"))
            started = time.monotonic()
            before, stored = asyncio.run(_drained(database_url, source, messages))
            seconds = time.monotonic() - started
    return ConsumerRun(
        processes=processes,
        messages=messages,
        stored=stored,
        measured=stored - before,
        seconds=seconds,
    )


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


async def _drained(database_url: str, source: str, expected: int) -> tuple[int, int]:
    """Rows of `source` now, and once `expected` are there (or the timeout passed)."""
    connection = await asyncpg.connect(database_url)
    sql = "SELECT count(*) FROM events WHERE source = $1"
    try:
        deadline = time.monotonic() + _DRAIN_TIMEOUT_S
        before = stored = int(await connection.fetchval(sql, source))
        while stored < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            stored = int(await connection.fetchval(sql, source))
        return before, stored
    finally:
        await connection.close()
