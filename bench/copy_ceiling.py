"""The raw COPY ceiling: how fast this database takes rows of the events' shape at all.

A scratch table with the columns and primary key of `events`, but neither partitioned
nor carrying the secondary indexes or the idempotency table: the best any ingest path
could do on this database, one COPY stream, committed chunk by chunk. PostgreSQL's CPU
over the same seconds gives its cost per row, the yardstick for the service's statement.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import asyncpg

from bench.cpu import CpuProbe
from bench.database import server_pids
from bench.events import COPY_COLUMNS, copy_records

TABLE = "bench_copy"  # spelled out in the SQL below too: DDL takes no parameters


@dataclass(frozen=True, slots=True)
class CopyResult:
    rows: int
    seconds: float
    postgres_cpu_s: float | None = None  # PostgreSQL's CPU for this database (None: unseen)
    client_cpu_s: float = 0.0  # the COPY client's (this process)

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds

    @property
    def postgres_us_per_row(self) -> float | None:
        return None if self.postgres_cpu_s is None else 1e6 * self.postgres_cpu_s / self.rows

    @property
    def client_us_per_row(self) -> float:
        return 1e6 * self.client_cpu_s / self.rows


async def _measure(url: str, rows: int, chunk: int) -> CopyResult:
    records = list(copy_records("/bench/copy", rows))  # built before the clock starts
    connection = await asyncpg.connect(url)
    try:
        await connection.execute("CREATE TABLE bench_copy (LIKE events INCLUDING DEFAULTS)")
        await connection.execute("ALTER TABLE bench_copy ADD PRIMARY KEY (source, id, received_at)")
        probe = CpuProbe(None, lambda: server_pids(url))
        await asyncio.to_thread(probe.start)  # it queries the server: off this loop
        started = time.monotonic()
        for offset in range(0, rows, chunk):
            await connection.copy_records_to_table(
                TABLE, records=records[offset : offset + chunk], columns=COPY_COLUMNS
            )
        seconds = time.monotonic() - started
        use = await asyncio.to_thread(probe.stop)
        copied: int = await connection.fetchval("SELECT count(*) FROM bench_copy")
        if copied != rows:
            raise RuntimeError(f"COPY stored {copied} rows, expected {rows}")
        return CopyResult(
            rows=rows,
            seconds=seconds,
            # A server on another machine leaves no processes here: no figure, not zero.
            postgres_cpu_s=use.postgres * use.seconds / 100 if use and use.postgres else None,
            client_cpu_s=probe.own_cpu_s,
        )
    finally:
        await connection.execute("DROP TABLE IF EXISTS bench_copy")
        await connection.close()


def measure_copy(url: str, *, rows: int, chunk: int) -> CopyResult:
    return asyncio.run(_measure(url, rows, chunk))
