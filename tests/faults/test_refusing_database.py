"""Fault 6, a database that refuses: statements cancelled by `statement_timeout`
(SQLSTATE 57014), then a database that only takes reads (25006, what a managed PostgreSQL
does when its disk is full). Both are classified transient: answered 503 with
`Retry-After`, never 500, never a lost acknowledgement. After repeated failures the
circuit breaker opens (in `/health` and `/metrics`), answering 503 at once instead of
hammering the database, and closes again by itself once the database takes writes.
"""

from __future__ import annotations

import asyncio
import time

import asyncpg
import httpx

from tests.faults.conftest import Report
from tests.faults.load import Load, stored_counts, tally
from tests.faults.process import Service, service
from tests.faults.support import fault_env, wait_ready
from tests.support import unique_source

PHASE_S = 5.0
_CIRCUIT_GAUGE = "sluice_database_circuit_state"


async def _set_database(url: str, *settings: str) -> None:
    """`ALTER DATABASE … SET/RESET`, then end every other session of it, so the service's
    pool reconnects and its new sessions carry the settings."""
    # This session writes whatever the database's defaults have become.
    connection = await asyncpg.connect(
        url, server_settings={"default_transaction_read_only": "off"}
    )
    try:
        name = await connection.fetchval("SELECT current_database()")
        for setting in settings:
            await connection.execute(f'ALTER DATABASE "{name}" {setting}')
        await connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await connection.close()


async def _observe(http: httpx.AsyncClient, server: Service, seconds: float) -> set[str]:
    """The circuit states `/health` and `/metrics` showed during `seconds`."""
    seen: set[str] = set()
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        answer = await http.get(f"{server.base_url}/health")
        if answer.status_code not in (200, 503):  # never a 500
            await asyncio.sleep(1)  # the server logs the exception after it answered
            raise AssertionError(f"/health: {answer.status_code}\n{server.output()[-6000:]}")
        health = answer.json()
        seen.add(health["components"]["circuit"]["state"])
        seen.add(f"database_ok={health['components']['database']['ok']}")
        for line in (await http.get(f"{server.base_url}/metrics")).text.splitlines():
            if line.startswith(_CIRCUIT_GAUGE + " "):
                seen.add(f"gauge={float(line.split()[1]):g}")
        await asyncio.sleep(0.2)
    return seen


async def test_refusing_database(migrated_database: str, fault_report: Report) -> None:
    source = unique_source("refusing")
    url = migrated_database
    with service(fault_env(url)) as server:
        server.start()
        load = Load(lambda: server.base_url, source, clients=4, batches=40, pause_s=0.1)
        running = asyncio.create_task(load.run())
        async with httpx.AsyncClient(timeout=10) as http:
            await asyncio.sleep(1)
            # Every write outlives a tiny statement_timeout: hold a lock it must wait for.
            await _set_database(url, "SET statement_timeout = '200ms'")
            locker = await asyncpg.connect(url)
            async with locker.transaction():
                await locker.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
                timeout_phase = await _observe(http, server, PHASE_S)
            await locker.close()
            await _set_database(
                url, "RESET statement_timeout", "SET default_transaction_read_only = on"
            )
            read_only_phase = await _observe(http, server, PHASE_S)
            await _set_database(url, "RESET default_transaction_read_only")
            await wait_ready(http, server.base_url, 20)
            closed_again = await _observe(http, server, 0.5)
            ledger = await running
        output = server.output()
    counts = tally(ledger, await stored_counts(url, source))
    fast_refusals = sum(1 for s, done, code in ledger.answered if code == 503 and done - s < 0.3)
    fault_report(
        counts.line("refusing-database", ledger)
        + f" fast_503s={fast_refusals} circuit={sorted(timeout_phase | read_only_phase)}"
    )

    assert ledger.statuses[500] == 0
    assert ledger.statuses[503] > 0
    assert ledger.missing_retry_after == 0
    assert "QueryCanceledError" in output  # 57014, classified transient and retried
    assert "ReadOnlySQLTransactionError" in output  # 25006, likewise
    assert {"open", "gauge=2"} <= timeout_phase, timeout_phase
    assert "open" in read_only_phase
    assert "database_ok=True" not in read_only_phase  # a read-only database is not ready
    assert fast_refusals > 0, "an open circuit did not answer at once"
    assert closed_again == {"closed", "gauge=0", "database_ok=True"}
    assert counts.lost == counts.duplicates == 0
    assert counts.acknowledged == counts.sent == counts.stored
