"""Fault 3, failover, and acceptance 2 (every command on a two-host `DATABASE_URL`).

A primary and a synchronous streaming replica (`pg_basebackup -R`,
`synchronous_standby_names`), one libpq URL naming both with
`target_session_attrs=read-write`. `migrate` runs through that URL; `serve --workers 2`
(gunicorn) and `consume` (RabbitMQ) take a steady load through it; the primary is
SIGKILLed and the replica promoted. Both processes reconnect by themselves to the new
primary; meanwhile answers are 503 (never 500); every acknowledged event is on the new
primary exactly once, and `maintain` works through the same URL afterwards.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import asyncpg
import pytest

from tests.broker_support import amqp_settings, queue_depth
from tests.faults.cluster import Cluster, create_database, make_synchronous
from tests.faults.conftest import Report
from tests.faults.load import Ledger, Load, publish_paced, stored_counts, tally, wait_stored
from tests.faults.process import service
from tests.faults.support import fault_env
from tests.integration.test_amqp_consumer import amqp_url  # noqa: F401 - a fixture
from tests.support import run_app, unique_source

MESSAGES = 1500
_CHUNK = 50


@pytest.fixture
async def pair(scratch: Path) -> tuple[Cluster, Cluster]:
    primary = Cluster(scratch, "a")
    primary.init()
    primary.start()
    replica = primary.replica("b")
    replica.start()
    await make_synchronous(primary)
    await create_database(primary)  # replicated: the standby has it too
    return primary, replica


def two_hosts(primary: Cluster, replica: Cluster) -> str:
    return (
        f"postgresql://postgres@{primary.address},{replica.address}/sluice"
        "?target_session_attrs=read-write&application_name=sluice-failover-test"
    )


async def test_failover_to_the_synchronous_replica(
    pair: tuple[Cluster, Cluster],
    amqp_url: str,  # noqa: F811 - the imported fixture
    fault_report: Report,
) -> None:
    primary, replica = pair
    url = two_hosts(primary, replica)
    migrated = run_app("migrate", env={"DATABASE_URL": url})
    assert migrated.returncode == 0, migrated.stderr

    name = f"failover-{uuid.uuid4().hex[:8]}"
    queue = amqp_settings(name, dead_letter_exchange=f"{name}.dlx", delivery_limit=10)
    amqp_source = f"/amqp/{queue.queue}"
    http_source = unique_source("failover")
    env = fault_env(url, SLUICE_BATCH_ACK_TIMEOUT_S="4")
    consumer_env = {
        **env,
        "AMQP_URL": amqp_url,
        "SLUICE_AMQP_QUEUE": queue.queue,
        "SLUICE_AMQP_DEAD_LETTER_EXCHANGE": queue.dead_letter_exchange,
        "SLUICE_AMQP_DELIVERY_LIMIT": str(queue.delivery_limit),
        "SLUICE_AMQP_RETRY_BACKOFF_S": "0.5",
        "SLUICE_AMQP_RETRY_MAX_BACKOFF_S": "2",
        "SLUICE_AMQP_RECONNECT_INTERVAL_S": "0.5",
    }
    with (
        service(env, "--workers", "2") as web,
        service(consumer_env, command="consume") as consumer,
    ):
        web.start()
        consumer.start(probe="ready")
        load = Load(lambda: web.base_url, http_source, clients=4, batches=30, pause_s=0.1)
        http_load = asyncio.create_task(load.run())
        ids = [f"{amqp_source}-{n}" for n in range(MESSAGES)]
        published = asyncio.create_task(
            publish_paced(amqp_url, queue, ids, chunk=_CHUNK, pause_s=0.15)
        )
        await asyncio.sleep(2)
        await asyncio.to_thread(primary.kill)
        killed_at = time.monotonic()
        await asyncio.sleep(1)  # the service meets a dead primary and a read-only standby
        await asyncio.to_thread(replica.promote)
        promoted_after = time.monotonic() - killed_at
        ledger = await http_load
        confirmed = await published
        await wait_stored(replica.url(), amqp_source, MESSAGES)
        web_alive = web.process is not None and web.process.poll() is None
        consumer_alive = consumer.process is not None and consumer.process.poll() is None
        dead_lettered = await queue_depth(amqp_url, queue.dead_letter_queue)
        application = await _application_names(replica)

    maintained = run_app("maintain", env={"DATABASE_URL": url})
    http_counts = tally(ledger, await stored_counts(replica.url(), http_source))
    amqp_stored = await stored_counts(replica.url(), amqp_source)
    amqp_ledger = Ledger(sent=confirmed, acknowledged=confirmed)
    amqp_counts = tally(amqp_ledger, amqp_stored)
    fault_report(
        http_counts.line("failover-http", ledger) + f" promoted_after={promoted_after:.1f}s"
    )
    fault_report(
        amqp_counts.line("failover-consumer", amqp_ledger) + f" dead_lettered={dead_lettered}"
    )

    assert web_alive, "the web service restarted or died"
    assert consumer_alive, "the consumer restarted or died"
    assert ledger.statuses[500] == 0
    assert ledger.missing_retry_after == 0
    assert http_counts.lost == http_counts.duplicates == 0
    assert http_counts.acknowledged == http_counts.sent
    assert amqp_counts.lost == amqp_counts.duplicates == 0
    assert amqp_counts.stored == MESSAGES
    assert dead_lettered == 0
    assert "sluice-failover-test" in application  # the URL's own parameter reached the server
    assert maintained.returncode == 0, maintained.stderr
    assert not await _in_recovery(replica)


async def _application_names(cluster: Cluster) -> set[str]:
    connection = await asyncpg.connect(cluster.url())
    try:
        rows = await connection.fetch("SELECT DISTINCT application_name FROM pg_stat_activity")
    finally:
        await connection.close()
    return {row["application_name"] for row in rows}


async def _in_recovery(cluster: Cluster) -> bool:
    connection = await asyncpg.connect(cluster.url())
    try:
        return bool(await connection.fetchval("SELECT pg_is_in_recovery()"))
    finally:
        await connection.close()
