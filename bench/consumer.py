"""Consumer throughput: a pre-filled queue drained by `python -m app consume`.

A vhost of the bench's own (deleted afterwards) on the RabbitMQ at `SLUICE_BENCH_AMQP_URL`
(default: this machine's, guest/guest) gets persistent messages carrying the events the
HTTP load sends, published with confirms before the clock starts: one event per message
(`application/cloudevents+json`, `--consumer-messages` of them), or, for the like-for-like
figure, `--batch` events per message (`application/cloudevents-batch+json`, as an HTTP
request carries them; `--consumer-batch-messages`). Then `--consumers` consumer processes
start (as many as the HTTP run's workers by default, so the two figures use the same
number of processes); the clock runs from their readiness (broker and database
connected, subscribed) until the last event is committed; what the first consumers
stored while the later ones started is left out of the figure. Result: events/s and the
consumer processes' CPU per event over the same window; after the consumers stopped,
the events of every message acked (published, less what the queue still holds) must
all be rows.
"""

from __future__ import annotations

import asyncio
import os
import time
from contextlib import ExitStack
from dataclasses import dataclass

import aio_pika
import asyncpg

from bench import cpu
from bench.events import batch_body
from bench.server import CONTRACTS_DIR
from tests.broker_support import (
    DEFAULT_AMQP_URL,
    amqp_settings,
    broker_reachable,
    publish_all,
    queue_depth,
    scratch_vhost,
)
from tests.support import served

_DRAIN_TIMEOUT_S = 600.0
SINGLE = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"


@dataclass(frozen=True, slots=True)
class ConsumerRun:
    processes: int
    messages: int
    events_per_message: int
    stored: int  # rows of the run's source once drained
    measured: int  # stored while the clock ran
    seconds: float
    cpu_s: float  # the consumer processes' CPU time while the clock ran
    acked: int  # events of the messages acked: published, less those left in the queue

    @property
    def events(self) -> int:
        return self.messages * self.events_per_message

    @property
    def events_per_s(self) -> float:
        return self.measured / self.seconds if self.seconds > 0 else 0.0

    @property
    def us_per_event(self) -> float:
        return 1e6 * self.cpu_s / self.measured if self.measured > 0 else float("nan")

    @property
    def label(self) -> str:
        if self.events_per_message == 1:
            return "one-event messages"
        return f"{self.events_per_message}-event batch messages"


def broker_url() -> str | None:
    """The broker to use, or None when it is unreachable (the figure is then left out)."""
    url = os.environ.get("SLUICE_BENCH_AMQP_URL", DEFAULT_AMQP_URL)
    return url if asyncio.run(broker_reachable(url)) else None


def measure_consumer(
    broker: str,
    database_url: str,
    *,
    messages: int,
    processes: int,
    run_tag: str,
    events_per_message: int = 1,
) -> ConsumerRun:
    source = f"/bench/{run_tag}/amqp"
    settings = amqp_settings(f"bench-{run_tag}", dead_letter_exchange=f"bench-{run_tag}.dlx")
    expected = messages * events_per_message
    with scratch_vhost(broker) as url:
        asyncio.run(publish_all(url, _messages(source, messages, events_per_message), settings))
        env = {
            "DATABASE_URL": database_url,
            "AMQP_URL": url,
            "SLUICE_AMQP_QUEUE": settings.queue,
            "SLUICE_AMQP_DEAD_LETTER_EXCHANGE": settings.dead_letter_exchange,
            # The same contract as the HTTP service checks: both figures pay for it.
            "SLUICE_CONTRACTS_DIR": os.environ.get("SLUICE_CONTRACTS_DIR", str(CONTRACTS_DIR)),
        }
        with ExitStack() as consumers:
            pids = [
                consumers.enter_context(served(env, command="consume", probe="ready"))[1].pid
                for _ in range(processes)
            ]
            started, cpu_before = time.monotonic(), cpu.process_seconds(pids)
            before, stored = asyncio.run(_drained(database_url, source, expected))
            seconds = time.monotonic() - started
            cpu_s = cpu.process_seconds(pids) - cpu_before
        # The consumers have stopped (SIGTERM: what they took is committed and acked, or
        # back in the queue): every message gone from the queue was acked.
        left = asyncio.run(queue_depth(url, settings.queue))
        rows = asyncio.run(_count(database_url, source))
    return ConsumerRun(
        processes=processes,
        messages=messages,
        events_per_message=events_per_message,
        stored=rows,
        measured=stored - before,
        seconds=seconds,
        cpu_s=cpu_s,
        acked=(messages - left) * events_per_message,
    )


def _messages(source: str, count: int, events_per_message: int) -> list[aio_pika.Message]:
    def body(n: int) -> bytes:
        if events_per_message == 1:
            return batch_body(source, n, 1)[1:-1]  # one event of the HTTP load's shape
        return batch_body(source, n * events_per_message, events_per_message)

    return [
        aio_pika.Message(
            body(n),
            content_type=SINGLE if events_per_message == 1 else BATCH,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=str(n),
        )
        for n in range(count)
    ]


_COUNT = "SELECT count(*) FROM events WHERE source = $1"
# What the drain polls: the keys table's primary key answers by source from the index
# alone. Counting `events` by source is a scan of every partition (no index leads with
# source): after `make bench`'s HTTP runs, millions of rows every 50 ms, which took a core
# of PostgreSQL from the consumers being measured. A key commits with its event.
_KEYS = "SELECT count(*) FROM event_keys WHERE source = $1"


async def _count(database_url: str, source: str) -> int:
    connection = await asyncpg.connect(database_url)
    try:
        return int(await connection.fetchval(_COUNT, source))
    finally:
        await connection.close()


async def _drained(database_url: str, source: str, expected: int) -> tuple[int, int]:
    """Rows of `source` now, and once `expected` are there (or the timeout passed)."""
    connection = await asyncpg.connect(database_url)
    try:
        deadline = time.monotonic() + _DRAIN_TIMEOUT_S
        before = stored = int(await connection.fetchval(_KEYS, source))
        while stored < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            stored = int(await connection.fetchval(_KEYS, source))
        return before, stored
    finally:
        await connection.close()
