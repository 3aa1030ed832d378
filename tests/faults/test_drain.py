"""Fault 4, graceful drain: SIGTERM under load, for `serve --workers 2` and `consume`.

serve: readiness fails first (at SIGTERM) while requests are still answered for
`SLUICE_DRAIN_DELAY_S`; then the server stops taking connections, the buffer is flushed
within the grace period and the process exits 0. No request that started before SIGTERM
is left without an answer, and every event answered 2xx is in the database when the
process is gone; the clients' resends go to the next process.

consume: exit 0, and afterwards stored + still queued is exactly what was published: a
delivery committed but left unacked would be counted twice, one acked but not committed
not at all.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid

import httpx

from tests.broker_support import amqp_settings, queue_depth
from tests.faults.conftest import Report
from tests.faults.load import Load, publish_paced, stored_counts, tally, wait_stored
from tests.faults.process import Service, service
from tests.faults.support import fault_env
from tests.integration.test_amqp_consumer import amqp_url  # noqa: F401 - a fixture
from tests.support import unique_source

DRAIN_DELAY_S = 2.0
ACK_TIMEOUT_S = 5.0


async def _watch_readiness(server: Service, since: float) -> float:
    """Seconds from `since` to the first failing `/health/ready` (or no answer at all)."""
    async with httpx.AsyncClient(timeout=2) as http:
        while True:
            try:
                status = (await http.get(f"{server.base_url}/health/ready")).status_code
            except httpx.TransportError:
                return time.monotonic() - since
            if status != 200:
                return time.monotonic() - since
            await asyncio.sleep(0.02)


async def test_sigterm_drains_the_web_server(migrated_database: str, fault_report: Report) -> None:
    source = unique_source("drain")
    env = fault_env(
        migrated_database,
        SLUICE_DRAIN_DELAY_S=str(DRAIN_DELAY_S),
        SLUICE_BATCH_ACK_TIMEOUT_S=str(ACK_TIMEOUT_S),
        SLUICE_BATCH_MAX_DELAY_MS="150",  # events wait in the buffer when SIGTERM lands
    )
    with service(env, "--workers", "2") as server, service(env) as successor:
        server.start()
        load = Load(lambda: server.base_url, source, clients=6, batches=60, pause_s=0.05)
        running = asyncio.create_task(load.run())
        await asyncio.sleep(2)
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)  # to gunicorn's master, as Kubernetes does
        signalled = time.monotonic()
        unready_after = await _watch_readiness(server, signalled)
        exit_code = await asyncio.to_thread(server.wait, DRAIN_DELAY_S + ACK_TIMEOUT_S + 15)
        exited_after = time.monotonic() - signalled
        acknowledged_at_exit = set(load.ledger.acknowledged)
        stored_at_exit = await stored_counts(migrated_database, source)
        answered_after_signal = [s for s, done, code in load.ledger.answered if s > signalled]
        successor.port = server.port  # the clients' resends reach the next process
        await asyncio.to_thread(successor.start)
        ledger = await running
    counts = tally(ledger, await stored_counts(migrated_database, source))
    fault_report(
        counts.line("drain-serve", ledger)
        + f" unready_after={unready_after:.2f}s exit={exit_code} after={exited_after:.1f}s"
        + f" acknowledged_at_exit={len(acknowledged_at_exit)}"
    )

    assert exit_code == 0
    assert unready_after < 0.5, "readiness did not fail first"
    assert answered_after_signal, "nothing was served during the drain delay"
    assert exited_after >= DRAIN_DELAY_S
    assert not [started for started in ledger.unanswered if started < signalled]
    assert acknowledged_at_exit <= stored_at_exit.keys(), "acknowledged, not flushed"
    assert ledger.statuses[500] == 0
    assert counts.lost == counts.duplicates == 0
    assert counts.acknowledged == counts.sent


async def test_sigterm_drains_the_consumer(
    migrated_database: str,
    amqp_url: str,  # noqa: F811 - the imported fixture
    fault_report: Report,
) -> None:
    total = 4000
    name = f"drain-{uuid.uuid4().hex[:8]}"
    queue = amqp_settings(name, dead_letter_exchange=f"{name}.dlx")
    source = f"/amqp/{queue.queue}"
    env = {
        **fault_env(migrated_database),
        "AMQP_URL": amqp_url,
        "SLUICE_AMQP_QUEUE": queue.queue,
        "SLUICE_AMQP_DEAD_LETTER_EXCHANGE": queue.dead_letter_exchange,
        "SLUICE_BATCH_MAX_SIZE": "100",
    }
    with service(env, command="consume") as consumer, service(env, command="consume") as next_one:
        consumer.start(probe="ready")
        ids = [f"m{n}" for n in range(total)]
        publishing = asyncio.create_task(
            publish_paced(amqp_url, queue, ids, chunk=100, pause_s=0.05)
        )
        await asyncio.sleep(1.5)
        consumer.signal_group(signal.SIGTERM)
        exit_code = await asyncio.to_thread(consumer.wait, 60)
        await publishing
        stored = await stored_counts(migrated_database, source)
        queued = await queue_depth(amqp_url, queue.queue)
        next_one.start(probe="ready")
        finally_stored = await wait_stored(migrated_database, source, total)
    acknowledged = total - queued  # settled by the consumer: gone from the queue
    duplicates = sum(n - 1 for n in stored.values())
    fault_report(
        f"[fault:drain-consume] sent={total} acknowledged={acknowledged} stored={len(stored)}"
        f" duplicates={duplicates} lost={acknowledged - len(stored)} exit={exit_code}"
        f" requeued={queued} finally_stored={len(finally_stored)}"
    )

    assert exit_code == 0
    assert 0 < len(stored) < total, "the consumer was not stopped midway"
    assert len(stored) + queued == total
    assert duplicates == 0
    assert len(finally_stored) == total
    assert sum(finally_stored.values()) == total
