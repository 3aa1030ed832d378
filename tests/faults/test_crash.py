"""Fault 1, crash under load: the production server (`serve --workers 2`, gunicorn) takes
a steady stream from concurrent clients that resend unacknowledged batches with the same
events; the whole process group is SIGKILLed midway and started again.

Every event that got a 2xx is stored, and every event is stored exactly once: what was in
the buffer when the process died was never acknowledged, so its clients send it again,
and what committed but was never answered comes back as `duplicate`.
"""

from __future__ import annotations

import asyncio
import time

from tests.faults.conftest import Report
from tests.faults.load import Load, stored_counts, tally
from tests.faults.process import service
from tests.faults.support import fault_env
from tests.support import unique_source


async def test_sigkill_of_gunicorn_under_load(migrated_database: str, fault_report: Report) -> None:
    source = unique_source("crash")
    with service(fault_env(migrated_database), "--workers", "2") as server:
        server.start()
        load = Load(lambda: server.base_url, source, clients=6, batches=40, pause_s=0.05)
        running = asyncio.create_task(load.run())
        await asyncio.sleep(1.5)
        acknowledged_before = len(load.ledger.acknowledged)
        await asyncio.to_thread(server.crash)
        crashed_at = time.monotonic()
        await asyncio.sleep(1)  # clients meet a refused port meanwhile
        await asyncio.to_thread(server.start)
        restarted_after = time.monotonic() - crashed_at
        ledger = await running
    counts = tally(ledger, await stored_counts(migrated_database, source))
    fault_report(
        counts.line("crash", ledger)
        + f" acknowledged_before_kill={acknowledged_before} back_after={restarted_after:.1f}s"
    )

    assert 0 < acknowledged_before < counts.sent, "the kill did not land midway"
    assert ledger.transport_errors > 0, "no client noticed the crash"
    assert ledger.statuses[500] == 0
    assert counts.lost == 0
    assert counts.duplicates == 0
    assert counts.acknowledged == counts.sent == counts.stored
