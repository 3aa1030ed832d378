"""The RabbitMQ consumer and broker-backed HTTP mode, against this machine's real RabbitMQ.

Every test module gets a vhost of its own (deleted afterwards, queues and all), every test
its own queue names. The consumer runs as a real process (`python -m app consume`), so
SIGKILL is a real crash. Under `CI=true` an unreachable broker fails the run.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime

import aio_pika
import asyncpg
import httpx
import orjson
import pytest
from aiormq.abc import DeliveredMessage

from app.broker import declare_topology
from app.config import AmqpSettings, HttpAck
from app.consumer import Acknowledger
from tests.broker_support import (
    DEFAULT_AMQP_URL,
    amqp_settings,
    broker_reachable,
    publish_all,
    queue_depth,
    rabbitmqctl,
    raw_message,
    scratch_vhost,
)
from tests.conftest import SettingsFactory, in_ci, running_app
from tests.integration.test_planted_pii import PLANTED
from tests.integration.test_planted_pii import _events as planted_events
from tests.support import (
    PrivatePostgres,
    free_port,
    make_event,
    run_pytest_under_ci,
    served,
    unique_source,
)

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"


@pytest.fixture(scope="module")
async def amqp_url() -> AsyncIterator[str]:
    url = os.environ.get("SLUICE_TEST_AMQP_URL", DEFAULT_AMQP_URL)
    if not await broker_reachable(url):
        message = f"RabbitMQ is unreachable at {url}"
        if in_ci():
            pytest.fail(f"{message}; under CI=true that is a failure")
        pytest.skip(message)
    with scratch_vhost(url) as vhost_url:
        yield vhost_url


@pytest.fixture
def queue() -> AmqpSettings:
    name = f"events-{uuid.uuid4().hex[:8]}"
    return amqp_settings(name, dead_letter_exchange=f"{name}.dlx")


def _env(amqp_url: str, database_url: str, queue: AmqpSettings, **extra: str) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "AMQP_URL": amqp_url,
        "SLUICE_AMQP_QUEUE": queue.queue,
        "SLUICE_AMQP_DEAD_LETTER_EXCHANGE": queue.dead_letter_exchange,
        "SLUICE_AMQP_DELIVERY_LIMIT": str(queue.delivery_limit),
        "SLUICE_AMQP_RECONNECT_INTERVAL_S": "0.5",
        "SLUICE_LOG_LEVEL": "WARNING",
        **extra,
    }


def _consumer(env: dict[str, str]) -> AbstractContextManager[tuple[str, subprocess.Popen[bytes]]]:
    return served(env, command="consume", probe="ready", timeout_s=60)


def _structured(source: str, event_id: str, **overrides: object) -> aio_pika.Message:
    body = orjson.dumps(make_event(source, event_id, **overrides))
    return raw_message(body, event_id, content_type=STRUCTURED)


def _batch(source: str, first: int, count: int, message_id: str = "") -> aio_pika.Message:
    """A batch message of events `first` .. `first + count - 1`."""
    body = orjson.dumps([make_event(source, n) for n in range(first, first + count)])
    return raw_message(body, message_id or f"{source}-batch-{first}", content_type=BATCH)


async def _settled(db: asyncpg.Connection, sql: str, arg: str, expected: int) -> int:
    deadline = time.monotonic() + 120
    count = -1
    while time.monotonic() < deadline:
        count = int(await db.fetchval(sql, arg))
        if count >= expected:
            return count
        await asyncio.sleep(0.25)
    return count


_BY_SOURCE = "SELECT count(*) FROM events WHERE source = $1"


async def test_sigkill_midway_then_every_message_is_stored_exactly_once(
    amqp_url: str, database_url: str, db: asyncpg.Connection, queue: AmqpSettings
) -> None:
    """Acceptance 1: 50,000 messages, the consumer SIGKILLed midway and restarted."""
    total = 50_000
    source = unique_source("amqp-kill")
    await publish_all(amqp_url, [_structured(source, str(n)) for n in range(total)], queue)
    env = _env(amqp_url, database_url, queue)
    with _consumer(env) as (_, process):
        midway = await _settled(db, _BY_SOURCE, source, total // 5)
        process.kill()  # SIGKILL: no drain, unacked deliveries go back to the queue
        process.wait()
    assert midway < total, "the consumer finished before it could be killed"
    with _consumer(env):
        stored = await _settled(db, _BY_SOURCE, source, total)
        await asyncio.sleep(1)  # let the last acks reach the broker
    distinct = await db.fetchval("SELECT count(DISTINCT id) FROM events WHERE source = $1", source)
    assert stored == distinct == total
    assert await queue_depth(amqp_url, queue.queue) == 0
    assert await queue_depth(amqp_url, queue.dead_letter_queue) == 0


async def test_a_group_gathers_deliveries_for_its_window_not_one_socket_read(
    amqp_url: str, database_url: str, db: asyncpg.Connection, queue: AmqpSettings
) -> None:
    """A pre-filled queue drains in full groups (SLUICE_BATCH_MAX_SIZE): a group waits up to
    SLUICE_AMQP_GROUP_WINDOW_MS for more, where one loop turn's would hold a few deliveries
    (a socket read's) and the pipeline's costs per message would be paid per few."""
    total, group = 400, 100
    source = unique_source("amqp-group")
    await publish_all(amqp_url, [_structured(source, str(n)) for n in range(total)], queue)
    env = _env(
        amqp_url,
        database_url,
        queue,
        SLUICE_LOG_LEVEL="INFO",
        SLUICE_BATCH_MAX_SIZE=str(group),
        SLUICE_AMQP_GROUP_WINDOW_MS="1000",
    )
    with tempfile.TemporaryFile() as log:
        with served(env, command="consume", probe="ready", timeout_s=60, log=log):
            assert await _settled(db, _BY_SOURCE, source, total) == total
        log.seek(0)
        [settled] = [orjson.loads(line) for line in log if b'"deliveries settled"' in line]
    assert settled["deliveries"] == total
    assert settled["groups"] <= total // group + 1


async def test_batch_messages_are_stored_whole_exactly_once_across_a_sigkill_and_resends(
    amqp_url: str, database_url: str, db: asyncpg.Connection, queue: AmqpSettings
) -> None:
    """Batch messages: every event stored, once. A SIGKILL midway redelivers the batches
    taken but not acked (some of them committed: their events come back `duplicate`), and
    re-publishing batches already stored stores nothing twice either."""
    total, per_message = 20_000, 50
    source = unique_source("amqp-batch")
    batches = [_batch(source, n, per_message) for n in range(0, total, per_message)]
    await publish_all(amqp_url, batches, queue)
    env = _env(amqp_url, database_url, queue)
    with _consumer(env) as (_, process):
        midway = await _settled(db, _BY_SOURCE, source, total // 5)
        process.kill()
        process.wait()
    assert midway < total, "the consumer finished before it could be killed"
    await publish_all(amqp_url, [_batch(source, n * 50, 50) for n in range(20)], queue)
    with _consumer(env) as (base_url, _):
        stored = await _settled(db, _BY_SOURCE, source, total)
        await _until_drained(amqp_url, queue.queue)
        async with httpx.AsyncClient() as client:
            metrics = (await client.get(f"{base_url}/metrics")).text
    distinct = await db.fetchval("SELECT count(DISTINCT id) FROM events WHERE source = $1", source)
    assert stored == distinct == total
    assert await db.fetchval(_BY_SOURCE, source) == total
    duplicates = _metric(metrics, "sluice_events_duplicate_total", 'source="amqp"')
    assert duplicates >= 20 * 50  # the resent batches, at least, were answered duplicate
    assert await queue_depth(amqp_url, queue.queue) == 0
    assert await queue_depth(amqp_url, queue.dead_letter_queue) == 0


async def test_a_batch_message_is_acked_only_after_its_events_commit(
    amqp_url: str, private_postgres: PrivatePostgres, queue: AmqpSettings
) -> None:
    """While the database is down no batch message is acked: killed then, the consumer
    leaves every one of them in the queue; once the database is back they are stored."""
    source = unique_source("amqp-batch-down")
    env = _env(
        amqp_url,
        private_postgres.url,
        queue,
        SLUICE_BATCH_ACK_TIMEOUT_S="1",
        SLUICE_DB_COMMAND_TIMEOUT_S="1",
        SLUICE_DB_CONNECT_TIMEOUT_S="1",
    )
    with _consumer(env) as (_, process):
        await asyncio.to_thread(private_postgres.stop)
        await publish_all(amqp_url, [_batch(source, n * 50, 50) for n in range(5)], queue)
        await asyncio.sleep(4)  # taken, written, failed: nacked and taken again, never acked
        process.kill()
        process.wait()
    assert await queue_depth(amqp_url, queue.queue) == 5
    await asyncio.to_thread(private_postgres.start)
    target = await asyncpg.connect(private_postgres.url)
    try:
        assert await target.fetchval(_BY_SOURCE, source) == 0
        with _consumer(env):
            stored = await _settled(target, _BY_SOURCE, source, 250)
            await _until_drained(amqp_url, queue.queue)
    finally:
        await target.close()
    assert stored == 250
    assert await queue_depth(amqp_url, queue.queue) == 0


async def test_a_batch_with_bad_events_stores_the_others_and_quarantines_those(
    amqp_url: str, database_url: str, db: asyncpg.Connection, queue: AmqpSettings
) -> None:
    """Each event of a batch is answered on its own: the good ones stored, the bad ones
    quarantined under their own ids, and the delivery acked once, not redelivered."""
    source = unique_source("amqp-batch-bad")
    events = [make_event(source, n) for n in range(10)]
    del events[3]["type"]
    events[7]["id"] = ""  # invalid id: quarantined under its type
    events[7]["type"] = f"{source}-no-id"
    message = raw_message(orjson.dumps(events), f"{source}-m", content_type=BATCH)
    await publish_all(amqp_url, [message], queue)
    quarantine_sql = "SELECT error_code FROM quarantine WHERE source = $1 ORDER BY error_code"
    with _consumer(_env(amqp_url, database_url, queue)):
        stored = await _settled(db, _BY_SOURCE, source, 8)
        await _until_drained(amqp_url, queue.queue)
        await asyncio.sleep(2)  # a redelivered batch would be quarantined again now
        quarantined = await db.fetch(quarantine_sql, source)
    ids = await db.fetch("SELECT id FROM events WHERE source = $1", source)
    assert stored == 8
    assert sorted(int(row["id"]) for row in ids) == [0, 1, 2, 4, 5, 6, 8, 9]
    assert [row["error_code"] for row in quarantined] == [
        "envelope.invalid_attribute",
        "envelope.missing_attribute",
    ]
    by_id = await db.fetchval(
        "SELECT occurrences FROM quarantine WHERE source = $1 AND event_id = '3'", source
    )
    assert by_id == 1
    assert await queue_depth(amqp_url, queue.queue) == 0
    assert await queue_depth(amqp_url, queue.dead_letter_queue) == 0


async def test_a_malformed_batch_is_quarantined_whole_under_its_message_id_and_acked(
    amqp_url: str, database_url: str, db: asyncpg.Connection, queue: AmqpSettings
) -> None:
    """A batch that cannot be read as a whole (not JSON, not an array, past the limits of
    an HTTP batch) is handled as a malformed single message: one quarantine row under its
    message_id, acked, never redelivered, never dead-lettered; nothing of it stored."""
    source = unique_source("amqp-batch-malformed")
    too_many = [make_event(source, n) for n in range(1001)]  # SLUICE_LIMIT_MAX_EVENTS_PER_REQUEST
    bodies = {
        f"{source}-json": b"[{not json",
        f"{source}-object": orjson.dumps(make_event(source, "o")),
        f"{source}-many": orjson.dumps(too_many),
        f"{source}-large": orjson.dumps([make_event(source, "l", data={"x": "y" * 1_100_000})]),
    }
    messages = [raw_message(body, name, content_type=BATCH) for name, body in bodies.items()]
    await publish_all(amqp_url, [*messages, _batch(source, 0, 5)], queue)
    names = list(bodies)
    quarantine_sql = (
        "SELECT event_id, error_code, occurrences FROM quarantine WHERE event_id = ANY($1::text[])"
    )
    with _consumer(_env(amqp_url, database_url, queue)):
        stored = await _settled(db, _BY_SOURCE, source, 5)
        deadline = time.monotonic() + 30
        while len(await db.fetch(quarantine_sql, names)) < len(names):
            assert time.monotonic() < deadline, "malformed batches were not quarantined"
            await asyncio.sleep(0.25)
        await _until_drained(amqp_url, queue.queue)
        await asyncio.sleep(2)  # a redelivered one would be quarantined again now
        rows = await db.fetch(quarantine_sql, names)
    assert stored == 5  # the well-formed batch behind them
    assert {row["event_id"]: (row["error_code"], row["occurrences"]) for row in rows} == {
        f"{source}-json": ("request.malformed_json", 1),
        f"{source}-object": ("request.not_an_event", 1),
        f"{source}-many": ("request.too_many_events", 1),
        f"{source}-large": ("request.body_too_large", 1),
    }
    assert await queue_depth(amqp_url, queue.queue) == 0
    assert await queue_depth(amqp_url, queue.dead_letter_queue) == 0


async def _until_drained(url: str, queue: str, timeout_s: float = 60) -> None:
    """Until the queue holds nothing ready (what the consumer took, it acked or holds)."""
    deadline = time.monotonic() + timeout_s
    while await queue_depth(url, queue) > 0:
        assert time.monotonic() < deadline, "the queue did not drain"
        await asyncio.sleep(0.25)


def _metric(text: str, name: str, label: str) -> float:
    return sum(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith(name) and label in line
    )


async def test_sigterm_commits_and_acks_what_it_took_and_nothing_more(
    amqp_url: str, database_url: str, db: asyncpg.Connection, queue: AmqpSettings
) -> None:
    """A graceful stop drains: afterwards stored + still queued is exactly what was sent (an
    event committed but not acked would be counted twice, one acked but lost not at all)."""
    total = 20_000
    source = unique_source("amqp-term")
    await publish_all(amqp_url, [_structured(source, str(n)) for n in range(total)], queue)
    with _consumer(_env(amqp_url, database_url, queue)) as (base_url, process):
        await _settled(db, _BY_SOURCE, source, total // 10)
        async with httpx.AsyncClient() as client:
            metrics = (await client.get(f"{base_url}/metrics")).text
        process.send_signal(signal.SIGTERM)
        exit_code = await asyncio.to_thread(process.wait, 60)
    stored = await db.fetchval(_BY_SOURCE, source)
    remaining = await queue_depth(amqp_url, queue.queue)
    assert exit_code == 0
    assert stored < total, "the consumer finished before it was stopped"
    assert stored + remaining == total
    assert 'sluice_amqp_deliveries_settled_total{settlement="acked"}' in metrics


async def test_database_outage_nacks_with_backoff_then_every_message_is_stored_once(
    amqp_url: str, private_postgres: PrivatePostgres, queue: AmqpSettings
) -> None:
    """Transient failure: batches that cannot commit are nacked back after a backoff and
    retried; within the delivery limit nothing is dead-lettered, nothing lost or doubled."""
    total = 3_000
    source = unique_source("amqp-outage")
    queue = queue.model_copy(update={"delivery_limit": 20})
    env = _env(
        amqp_url,
        private_postgres.url,
        queue,
        SLUICE_BATCH_ACK_TIMEOUT_S="1",
        SLUICE_BATCH_RETRY_MAX_BACKOFF_S="0.2",
        SLUICE_DB_COMMAND_TIMEOUT_S="1",
        SLUICE_DB_CONNECT_TIMEOUT_S="1",
        SLUICE_AMQP_RETRY_BACKOFF_S="0.5",
        SLUICE_AMQP_RETRY_MAX_BACKOFF_S="1",
        SLUICE_BATCH_MAX_SIZE="100",
    )
    with _consumer(env) as (base_url, _):
        await asyncio.to_thread(private_postgres.stop)
        await publish_all(amqp_url, [_structured(source, str(n)) for n in range(total)], queue)
        await asyncio.sleep(5)  # batches fail, are nacked, come back, fail again
        await asyncio.to_thread(private_postgres.start)
        target = await asyncpg.connect(private_postgres.url)
        try:
            stored = await _settled(target, _BY_SOURCE, source, total)
            distinct = await target.fetchval(
                "SELECT count(DISTINCT id) FROM events WHERE source = $1", source
            )
        finally:
            await target.close()
        async with httpx.AsyncClient() as client:
            metrics = (await client.get(f"{base_url}/metrics")).text
    nacked = next(
        line for line in metrics.splitlines() if 'settlement="nacked"' in line and "_total" in line
    )
    assert float(nacked.split()[-1]) > 0  # the outage was real: deliveries went back
    assert stored == distinct == total
    assert await queue_depth(amqp_url, queue.queue) == 0
    assert await queue_depth(amqp_url, queue.dead_letter_queue) == 0


async def test_every_mode_is_stored_and_poison_is_quarantined_not_redelivered(
    amqp_url: str, database_url: str, db: asyncpg.Connection, queue: AmqpSettings
) -> None:
    """Acceptance 2, and the AMQP binding's modes."""
    source = unique_source("amqp-modes")
    raw_type = f"com.example.raw.{uuid.uuid4().hex[:8]}"
    sent_at = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    good = [_structured(source, f"s{n}") for n in range(5)]
    good += [  # binary mode: attributes in application properties
        raw_message(
            orjson.dumps({"n": n}),
            f"b{n}",
            content_type="application/json",
            headers={
                "cloudEvents:specversion": "1.0",
                "cloudEvents:id": f"b{n}",
                "cloudEvents:source": source,
                "cloudEvents_type": "com.example.binary",
            },
        )
        for n in range(5)
    ]
    good += [  # raw JSON: wrapped, message_id as id
        raw_message(orjson.dumps({"raw": n}), f"{source}-r{n}", type=raw_type, timestamp=sent_at)
        for n in range(5)
    ]
    poison_ids = [f"{source}-poison-{n}" for n in range(4)]
    poison = [
        raw_message(b"{not json", poison_ids[0], content_type=STRUCTURED),
        raw_message(  # structured, no id: quarantined under its type
            orjson.dumps({"specversion": "1.0", "source": source, "type": poison_ids[1]}),
            poison_ids[1],
        ),
        raw_message(  # claims to be already anonymized, unsigned: must not bypass the policy
            b'{"kind": "event"}',
            poison_ids[2],
            content_type="application/vnd.sluice.writable+json",
        ),
        raw_message(b"x" * 2_000_000, poison_ids[3], content_type="text/plain"),
    ]
    # (A message without message_id is refused too, but aiormq gives every message one.)
    await publish_all(amqp_url, [*good, *poison], queue)
    quarantine_sql = (
        "SELECT count(*) FROM quarantine WHERE coalesce(event_id, type) = ANY($1::text[])"
    )
    with _consumer(_env(amqp_url, database_url, queue)):
        stored = await _settled(db, _BY_SOURCE, source, 10)
        wrapped = await _settled(db, "SELECT count(*) FROM events WHERE type = $1", raw_type, 5)
        deadline = time.monotonic() + 30
        while await db.fetchval(quarantine_sql, poison_ids) < len(poison):
            assert time.monotonic() < deadline, "poison messages were not quarantined"
            await asyncio.sleep(0.25)
        await asyncio.sleep(2)  # a redelivered poison message would be quarantined again now
        quarantined = await db.fetchval(quarantine_sql, poison_ids)
    assert (stored, wrapped, quarantined) == (10, 5, len(poison))
    codes = await db.fetch(
        "SELECT coalesce(event_id, type) AS name, error_code FROM quarantine "
        "WHERE coalesce(event_id, type) = ANY($1::text[])",
        poison_ids,
    )
    assert {row["name"]: row["error_code"] for row in codes} == {
        poison_ids[0]: "request.malformed_json",
        poison_ids[1]: "envelope.missing_attribute",
        poison_ids[2]: "envelope.bad_forward_signature",
        poison_ids[3]: "size.event_too_large",
    }
    row = await db.fetchrow(
        "SELECT source, time, data FROM events WHERE type = $1 LIMIT 1", raw_type
    )
    assert row["source"] == f"/amqp/{queue.queue}"
    assert row["time"] == sent_at
    assert await queue_depth(amqp_url, queue.queue) == 0
    assert await queue_depth(amqp_url, queue.dead_letter_queue) == 0


async def test_a_message_past_the_delivery_limit_is_dead_lettered(
    amqp_url: str, queue: AmqpSettings
) -> None:
    """Acceptance 2: what keeps failing (a consumer crash per delivery) is not retried
    forever: the quorum queue's delivery limit hands it to the dead-letter exchange."""
    limited = queue.model_copy(update={"delivery_limit": 2})
    await publish_all(amqp_url, [raw_message(b"{}", "crashes-the-consumer")], limited)
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        events = await declare_topology(channel, limited)
        for _ in range(limited.delivery_limit + 1):
            delivery = await events.get(timeout=5, fail=False)
            if delivery is None:
                break
            await delivery.nack(requeue=True)
        await asyncio.sleep(0.5)
        dead = await channel.declare_queue(limited.dead_letter_queue, passive=True)
        letter = await dead.get(timeout=5)
        await letter.ack()
    finally:
        await connection.close()
    assert letter.message_id == "crashes-the-consumer"
    assert await queue_depth(amqp_url, limited.queue) == 0


async def test_a_multiple_ack_never_takes_a_nacked_delivery_along(
    amqp_url: str, queue: AmqpSettings
) -> None:
    """Deliveries 1-3 taken; 1 is nacked while 2 and 3 commit in the same turn of the
    loop. The `multiple` ack of 3 must reach the broker after the nack of 1, or it would
    ack 1 too (lost), and the nack of an acked tag would then close the channel."""
    await publish_all(amqp_url, [raw_message(b"{}", f"m{n}") for n in range(3)], queue)
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        await declare_topology(channel, queue)
        raw = await channel.get_underlay_channel()
        await raw.basic_qos(prefetch_count=10)
        taken: list[DeliveredMessage] = []

        async def take(delivery: DeliveredMessage) -> None:
            taken.append(delivery)

        await raw.basic_consume(queue.queue, take)
        await _until(lambda: len(taken) == 3)
        acks = Acknowledger()
        first, *rest = [acks.track(delivery) for delivery in taken]
        nacking = asyncio.create_task(acks.nack([first]))
        acks.committed(rest)
        await nacking
        await acks.idle()
        await _until(lambda: len(taken) == 4)  # the nacked one, back
        again = taken[3]
        await raw.basic_ack(again.delivery_tag or 0)
        await asyncio.sleep(0.5)
        assert not raw.is_closed
    finally:
        await connection.close()
    assert again.header.properties.message_id == "m0"
    assert again.redelivered
    assert await queue_depth(amqp_url, queue.queue) == 0
    assert await queue_depth(amqp_url, queue.dead_letter_queue) == 0


async def _until(condition: Callable[[], bool], timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


@pytest.fixture
def restores_broker() -> Iterator[None]:
    """However the test ends, RabbitMQ is running again afterwards."""
    try:
        yield
    finally:
        rabbitmqctl("start_app")
        _wait_for_broker()


def _wait_for_broker() -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        probe = subprocess.run(
            ["rabbitmq-diagnostics", "-q", "check_port_connectivity"],  # noqa: S607 - the machine's tool
            capture_output=True,
            check=False,
        )
        if probe.returncode == 0:
            return
        time.sleep(0.5)
    raise TimeoutError("RabbitMQ did not come back in 60 s")


async def test_broker_restart_while_consuming_then_nothing_is_lost(
    amqp_url: str,
    database_url: str,
    db: asyncpg.Connection,
    queue: AmqpSettings,
    restores_broker: None,
) -> None:
    """Acceptance 3: stop_app/start_app mid-stream; the consumer reconnects by itself."""
    total = 20_000
    source = unique_source("amqp-restart")
    await publish_all(amqp_url, [_structured(source, str(n)) for n in range(total)], queue)
    with _consumer(_env(amqp_url, database_url, queue)) as (base_url, process):
        before = await _settled(db, _BY_SOURCE, source, total // 10)
        await asyncio.to_thread(rabbitmqctl, "stop_app")
        await asyncio.sleep(1)
        async with httpx.AsyncClient() as client:
            down = (await client.get(f"{base_url}/health/ready")).json()
        await asyncio.to_thread(rabbitmqctl, "start_app")
        await asyncio.to_thread(_wait_for_broker)
        stored = await _settled(db, _BY_SOURCE, source, total)
        await asyncio.sleep(1)
        async with httpx.AsyncClient() as client:
            ready = await client.get(f"{base_url}/health/ready")
        assert process.poll() is None, "the consumer died with the broker"
    assert before < total, "the consumer finished before the broker restart"
    assert down["components"]["broker"]["ok"] is False
    assert ready.status_code == 200
    assert ready.json()["components"]["broker"]["ok"] is True
    assert stored == total
    assert await queue_depth(amqp_url, queue.queue) == 0


async def test_broker_mode_every_202_is_stored_also_across_a_consumer_crash(
    amqp_url: str, database_url: str, db: asyncpg.Connection, queue: AmqpSettings
) -> None:
    """Acceptance 4: SLUICE_HTTP_ACK=broker; the consumer is SIGKILLed between requests."""
    source = unique_source("amqp-http")
    env = _env(amqp_url, database_url, queue)
    accepted: list[str] = []

    async def post(client: httpx.AsyncClient, start: int) -> None:
        events = [
            make_event(source, n, subject=f"user{n}@example.com") for n in range(start, start + 50)
        ]
        events.append({"specversion": "1.0", "id": f"bad{start}", "source": source})  # no type
        response = await client.post("/ingest", json=events)
        assert response.status_code == 202, response.text
        body = response.json()
        assert (body["accepted"], body["rejected"]) == (50, 1)
        accepted.extend(str(n) for n in range(start, start + 50))

    with served({**env, "SLUICE_HTTP_ACK": "broker"}, probe="ready") as (web_url, _):
        async with httpx.AsyncClient(base_url=web_url, timeout=30) as client:
            with _consumer(env) as (_, consumer):
                await asyncio.gather(*(post(client, n * 50) for n in range(20)))
                await _settled(db, _BY_SOURCE, source, 200)
                consumer.kill()
                consumer.wait()
            await asyncio.gather(*(post(client, n * 50) for n in range(20, 40)))
        with _consumer(env):
            stored = await _settled(db, _BY_SOURCE, source, len(accepted))
            quarantined = await _settled(
                db, "SELECT count(DISTINCT event_id) FROM quarantine WHERE source = $1", source, 40
            )
    assert stored == len(accepted) == 2000
    # Every refusal is kept; quarantine rows have no idempotency key, so a refusal whose ack
    # the crash lost may be kept twice (events never are).
    assert quarantined == 40
    leaked = await db.fetchval(
        "SELECT count(*) FROM events WHERE source = $1 AND subject_pseudonym LIKE '%@%'", source
    )
    assert leaked == 0  # the broker held anonymized events only
    assert await queue_depth(amqp_url, queue.queue) == 0


async def test_broker_mode_puts_no_planted_value_on_the_broker(
    amqp_url: str, make_settings: SettingsFactory, queue: AmqpSettings
) -> None:
    """RabbitMQ writes messages to disk: what broker mode publishes is already anonymized,
    refused events included (the events of test_planted_pii, searched for the same way)."""
    settings = make_settings().model_copy(
        update={"amqp_url": amqp_url, "http_ack": HttpAck.BROKER, "amqp": queue}
    )
    async with running_app(settings) as client:
        await _until_ready(client)
        response = await client.post("/ingest", json=planted_events("/planted/amqp"))
    assert response.status_code == 202, response.text
    assert response.json()["rejected"] == 2
    published = []
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        events = await channel.declare_queue(queue.queue, passive=True)
        while (message := await events.get(timeout=5, fail=False)) is not None:
            published.append(message.body.decode() + repr(message.headers))
            await message.ack()
    finally:
        await connection.close()
    assert len(published) == 4  # two anonymized events, two quarantine records
    for value in PLANTED:
        assert not any(value in text for text in published), f"{value!r} reached RabbitMQ"


async def _until_ready(client: httpx.AsyncClient) -> None:
    deadline = time.monotonic() + 30
    while (await client.get("/health/ready")).status_code != 200:
        assert time.monotonic() < deadline, "not ready: no broker connection"
        await asyncio.sleep(0.1)


async def test_broker_mode_answers_503_when_the_broker_refuses(
    amqp_url: str, database_url: str, queue: AmqpSettings
) -> None:
    """Backpressure: a message the broker cannot route is a 503, never a 202; the next
    request declares the queue again."""
    env = {**_env(amqp_url, database_url, queue), "SLUICE_HTTP_ACK": "broker"}
    source = unique_source("amqp-refused")
    with served(env, probe="ready") as (web_url, _):
        async with httpx.AsyncClient(base_url=web_url, timeout=30) as client:
            first = await client.post("/ingest", json=[make_event(source, 1)])
            connection = await aio_pika.connect(amqp_url)
            try:
                channel = await connection.channel()
                await channel.queue_delete(queue.queue)
            finally:
                await connection.close()
            refused = await client.post("/ingest", json=[make_event(source, 2)])
            healed = await client.post("/ingest", json=[make_event(source, 2)])
    assert healed.status_code == 202  # the refusal made the publisher declare the queue again
    assert first.status_code == 202
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"
    assert refused.json()["code"] == "transient.broker"


async def test_broker_mode_answers_503_when_the_broker_is_unreachable(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings().model_copy(
        update={
            "amqp_url": f"amqp://guest:guest@127.0.0.1:{free_port()}/",
            "http_ack": HttpAck.BROKER,
        }
    )
    async with running_app(settings) as client:
        response = await client.post("/ingest", json=[make_event(unique_source(), 1)])
        ready = await client.get("/health/ready")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json()["code"] == "transient.broker"
    assert ready.status_code == 503
    assert ready.json()["components"]["broker"] == {"ok": False}


def test_an_unreachable_broker_fails_the_run_under_ci() -> None:
    """Acceptance 6: a child pytest with CI=true and no broker must fail, not skip."""
    port = free_port()
    result = run_pytest_under_ci(
        f"{__file__}::test_a_message_past_the_delivery_limit_is_dead_lettered",
        {"SLUICE_TEST_AMQP_URL": f"amqp://guest:guest@127.0.0.1:{port}/"},
    )
    assert result.returncode != 0
    assert "skipped" not in result.stdout
