"""A primary that turns read-only under the service (a switchover's demotion): SQLSTATE
25006 is transient, the pool drops every connection to it and reconnects to whichever
host of the multi-host URL is read-write now, without a restart.

Two independent servers stand for the old and the new primary, so the test controls
exactly when the first one refuses writes (`default_transaction_read_only`, reloaded:
the open sessions turn read-only at once, as a demoted primary's would).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg

from app.storage import migrations
from tests.faults.cluster import Cluster, create_database
from tests.faults.conftest import Report
from tests.faults.load import Load, stored_counts, tally
from tests.faults.process import service
from tests.faults.support import fault_env
from tests.support import unique_source


async def _cluster(scratch: Path, name: str) -> Cluster:
    cluster = Cluster(scratch, name)
    cluster.init()
    cluster.start()
    await create_database(cluster)
    await asyncio.to_thread(migrations.upgrade, cluster.url())
    return cluster


async def _turn_read_only(cluster: Cluster) -> None:
    connection = await asyncpg.connect(cluster.url())
    try:
        await connection.execute("ALTER SYSTEM SET default_transaction_read_only = on")
        await connection.execute("SELECT pg_reload_conf()")
    finally:
        await connection.close()


async def test_read_only_primary_is_left_for_the_read_write_host(
    scratch: Path, fault_report: Report
) -> None:
    # One after the other: Alembic's `context` is global to the process.
    old = await _cluster(scratch, "old")
    new = await _cluster(scratch, "new")
    url = (
        f"postgresql://postgres@{old.address},{new.address}/sluice?target_session_attrs=read-write"
    )
    source = unique_source("read-only")
    with service(fault_env(url)) as server:
        server.start()
        load = Load(lambda: server.base_url, source, clients=4, batches=25, pause_s=0.1)
        running = asyncio.create_task(load.run())
        await asyncio.sleep(1.5)
        await _turn_read_only(old)
        ledger = await running
        alive = server.process is not None and server.process.poll() is None
    on_old = await stored_counts(old.url(), source)
    on_new = await stored_counts(new.url(), source)
    counts = tally(ledger, on_old + on_new)
    fault_report(
        counts.line("read-only", ledger) + f" on_old_primary={len(on_old)} on_new={len(on_new)}"
    )

    assert alive
    assert ledger.statuses[500] == 0
    assert ledger.missing_retry_after == 0
    assert on_old, "nothing was written before the switch"
    assert len(on_new) > len(on_old) / 10, "the service did not move to the read-write host"
    assert not on_old.keys() & on_new.keys()
    assert counts.lost == counts.duplicates == 0
    assert counts.acknowledged == counts.sent
