"""The benchmark's PostgreSQL: a fresh, migrated database of its own, dropped at the end.

The server comes from `SLUICE_BENCH_ADMIN_DATABASE_URL` (default: this machine's
PostgreSQL at 127.0.0.1:5432); when that is unreachable, the embedded server stands in.
"""

from __future__ import annotations

import asyncio
import os
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import asyncpg

from app.storage import migrations
from app.storage.embedded import start_embedded
from tests.support import reachable, with_database

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
EMBEDDED_DIR = Path(__file__).resolve().parents[1] / ".data" / "bench-postgres"


def admin_url() -> tuple[str, str]:
    """An admin URL and where it points: the configured server, else the embedded one."""
    url = os.environ.get("SLUICE_BENCH_ADMIN_DATABASE_URL", DEFAULT_ADMIN_URL)
    if asyncio.run(reachable(url)):
        return url, "configured"
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI): harmless.
        warnings.simplefilter("ignore", UserWarning)
        embedded = start_embedded(str(EMBEDDED_DIR), keep_running=False)
    return embedded.replace("/sluice?", "/postgres?", 1), "embedded"


async def _execute(url: str, *statements: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


@contextmanager
def scratch_database(admin: str) -> Iterator[str]:
    """Create `sluice_bench_<hex>`, migrate it to head, yield its URL; drop it on exit."""
    name = f"sluice_bench_{uuid.uuid4().hex[:12]}"
    asyncio.run(_execute(admin, f'CREATE DATABASE "{name}"'))
    try:
        url = with_database(admin, name)
        migrations.upgrade(url)
        yield url
    finally:
        asyncio.run(_execute(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def checkpoint(admin: str) -> None:
    """Flush dirty pages so neither phase pays for the other's writes; needs superuser
    (or pg_checkpoint), skipped without it."""
    with suppress(asyncpg.InsufficientPrivilegeError):
        asyncio.run(_execute(admin, "CHECKPOINT"))


async def _count(url: str) -> int:
    connection = await asyncpg.connect(url)
    try:
        count: int = await connection.fetchval("SELECT count(*) FROM events")
        return count
    finally:
        await connection.close()


def count_events(url: str) -> int:
    return asyncio.run(_count(url))
