"""Fault 5, slow database: a lock on the events table held longer than the ack timeout.

Requests wait for their commit up to their deadline, then get 503 with `Retry-After`
(or 429 once the buffer is full), never a 500; the buffer bound holds; once the lock is
released every retried event is stored exactly once.
"""

from __future__ import annotations

import asyncio

import asyncpg
import httpx

from tests.faults.conftest import Report
from tests.faults.load import Load, stored_counts, tally
from tests.faults.process import service
from tests.faults.support import fault_env
from tests.support import unique_source

ACK_TIMEOUT_S = 2.0
LOCK_HELD_S = 7.0
BUFFER_MAX_EVENTS = 100  # less than the clients have in flight: the bound is reached
_WAIT_GRACE_S = 1.0  # app.pipeline.ingest: how long past its deadline a waiter waits


async def test_locked_events_table(migrated_database: str, fault_report: Report) -> None:
    source = unique_source("slow")
    env = fault_env(
        migrated_database,
        SLUICE_BATCH_ACK_TIMEOUT_S=str(ACK_TIMEOUT_S),
        SLUICE_BATCH_BUFFER_MAX_EVENTS=str(BUFFER_MAX_EVENTS),
        SLUICE_LIMIT_MAX_EVENTS_PER_REQUEST="50",
    )
    with service(env) as server:
        server.start()
        load = Load(lambda: server.base_url, source, clients=6, batches=25, pause_s=0.05)
        running = asyncio.create_task(load.run())
        await asyncio.sleep(1)
        locker = await asyncpg.connect(migrated_database)
        buffered: list[int] = []
        try:
            async with locker.transaction(), httpx.AsyncClient(timeout=10) as http:
                await locker.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
                for _ in range(int(LOCK_HELD_S / 0.25)):
                    health = (await http.get(f"{server.base_url}/health")).json()
                    buffered.append(health["components"]["batcher"]["buffered_events"])
                    await asyncio.sleep(0.25)
                refused_during = load.ledger.statuses[503] + load.ledger.statuses[429]
        finally:
            await locker.close()  # the transaction ends: the lock is released
        ledger = await running
    counts = tally(ledger, await stored_counts(migrated_database, source))
    fault_report(
        counts.line("slow-database", ledger)
        + f" slowest_503={ledger.slowest_refusal_s:.2f}s max_buffered={max(buffered)}"
    )

    assert refused_during > 0, "the lock was never felt"
    assert ledger.statuses[429] > 0, "the buffer never filled"
    assert ledger.statuses[500] == 0
    assert ledger.missing_retry_after == 0
    # Waited for the commit up to the deadline, not much longer.
    assert ACK_TIMEOUT_S * 0.75 <= ledger.slowest_refusal_s <= ACK_TIMEOUT_S + _WAIT_GRACE_S + 1.5
    assert max(buffered) <= BUFFER_MAX_EVENTS
    assert counts.lost == counts.duplicates == 0
    assert counts.acknowledged == counts.sent == counts.stored
