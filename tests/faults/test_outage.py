"""Fault 2, database outage: `pg_ctl stop -m immediate` for 15 s under load.

While the database is down every refused request is a 503 with `Retry-After` (never a
500), `/health/ready` fails, the buffer stays within its bound and the process's memory
does not grow with the outage; once PostgreSQL is back the same process (no restart)
becomes ready and stores every retried event exactly once.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from tests.faults.cluster import Cluster
from tests.faults.conftest import Report
from tests.faults.load import Load, stored_counts, tally
from tests.faults.process import service
from tests.support import unique_source

OUTAGE_S = 15.0
BUFFER_MAX_EVENTS = 2000


def fault_env(url: str, **extra: str) -> dict[str, str]:
    """Short timeouts, so a fault shows within seconds, and a small buffer."""
    return {
        "DATABASE_URL": url,
        "SLUICE_LOG_LEVEL": "WARNING",
        "SLUICE_BATCH_ACK_TIMEOUT_S": "2",
        "SLUICE_BATCH_RETRY_MAX_BACKOFF_S": "0.3",
        "SLUICE_BATCH_BUFFER_MAX_EVENTS": str(BUFFER_MAX_EVENTS),
        "SLUICE_DB_CONNECT_TIMEOUT_S": "1",
        "SLUICE_DB_COMMAND_TIMEOUT_S": "3",
        "SLUICE_DB_BREAKER_RESET_S": "1",
        **extra,
    }


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def wait_ready(http: httpx.AsyncClient, base_url: str, timeout_s: float) -> float:
    """Seconds until `/health/ready` answered 200."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if (await http.get(f"{base_url}/health/ready")).status_code == 200:
            return time.monotonic() - started
        await asyncio.sleep(0.2)
    raise AssertionError(f"not ready {timeout_s} s after the database came back")


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
