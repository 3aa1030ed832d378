"""Fault 2, database outage: `pg_ctl stop -m immediate` for 15 s under load.

While the database is down every refused request is a 503 with `Retry-After` (never a
500), `/health/ready` fails, the buffer stays within its bound and the process's memory
does not grow with the outage; once PostgreSQL is back the same process (no restart)
becomes ready and stores every retried event exactly once.
"""

from __future__ import annotations

import asyncio
import time

import httpx

from tests.faults.cluster import Cluster
from tests.faults.conftest import Report
from tests.faults.load import Load, stored_counts, tally
from tests.faults.process import service
from tests.faults.support import BUFFER_MAX_EVENTS, fault_env, rss_bytes, wait_ready
from tests.support import unique_source

OUTAGE_S = 15.0


async def test_database_outage_under_load(own_cluster: Cluster, fault_report: Report) -> None:
    source = unique_source("outage")
    with service(fault_env(own_cluster.url())) as server:
        server.start()
        assert server.process is not None
        pid = server.process.pid
        load = Load(lambda: server.base_url, source, clients=4, batches=30, pause_s=0.1)
        running = asyncio.create_task(load.run())
        async with httpx.AsyncClient(timeout=10) as http:
            await asyncio.sleep(1.5)
            rss_before = rss_bytes(pid)
            await asyncio.to_thread(own_cluster.stop, "immediate")
            stopped_at = time.monotonic()
            readiness, buffered, rss = [], [], []
            while time.monotonic() - stopped_at < OUTAGE_S:
                health = await http.get(f"{server.base_url}/health/ready")
                readiness.append(health.status_code)
                buffered.append(health.json()["components"]["batcher"]["buffered_events"])
                rss.append(rss_bytes(pid))
                await asyncio.sleep(0.5)
            await asyncio.to_thread(own_cluster.start)
            recovered_in = await wait_ready(http, server.base_url, 30)
            ledger = await running
        assert server.process.poll() is None, "the service restarted or died"
    counts = tally(ledger, await stored_counts(own_cluster.url(), source))
    fault_report(
        counts.line("outage", ledger)
        + f" ready_again_after={recovered_in:.1f}s max_buffered={max(buffered)}"
        + f" rss_growth_mb={(max(rss) - rss_before) / 2**20:.1f}"
    )

    assert ledger.statuses[500] == 0
    assert ledger.statuses[503] > 0, "the outage was never felt"
    assert ledger.missing_retry_after == 0
    assert set(readiness[2:]) == {503}, readiness  # the first probe may predate the stop
    assert max(buffered) <= BUFFER_MAX_EVENTS
    assert max(rss) - rss_before < 64 * 2**20
    assert counts.lost == 0
    assert counts.duplicates == 0
    assert counts.acknowledged == counts.sent == counts.stored
