"""The raw COPY ceiling: how fast this database takes rows of the events' shape at all.

A scratch table with the columns and primary key of `events`, but neither partitioned
nor carrying the secondary indexes or the idempotency table: the best any ingest path
could do on this database, one COPY stream, committed chunk by chunk.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import asyncpg

from bench.events import COPY_COLUMNS, copy_records

TABLE = "bench_copy"  # spelled out in the SQL below too: DDL takes no parameters


@dataclass(frozen=True, slots=True)
class CopyResult:
    rows: int
    seconds: float

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds


async def _measure(url: str, rows: int, chunk: int) -> CopyResult:
    records = list(copy_records("/bench/copy", rows))  # built before the clock starts
    connection = await asyncpg.connect(url)
    try:
        await connection.execute("CREATE TABLE bench_copy (LIKE events INCLUDING DEFAULTS)")
        await connection.execute("ALTER TABLE bench_copy ADD PRIMARY KEY (source, id, received_at)")
        started = time.monotonic()
        for offset in range(0, rows, chunk):
            await connection.copy_records_to_table(
                TABLE, records=records[offset : offset + chunk], columns=COPY_COLUMNS
            )
        seconds = time.monotonic() - started
        copied: int = await connection.fetchval("SELECT count(*) FROM bench_copy")
        if copied != rows:
            raise RuntimeError(f"COPY stored {copied} rows, expected {rows}")
        return CopyResult(rows=rows, seconds=seconds)
    finally:
        await connection.execute("DROP TABLE IF EXISTS bench_copy")
        await connection.close()


def measure_copy(url: str, *, rows: int, chunk: int) -> CopyResult:
    return asyncio.run(_measure(url, rows, chunk))
