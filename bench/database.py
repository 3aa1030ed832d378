"""The benchmark's PostgreSQL: a fresh, migrated database of its own, dropped at the end.

The server comes from `SLUICE_BENCH_ADMIN_DATABASE_URL` (default: this machine's
PostgreSQL at 127.0.0.1:5432); when that is unreachable, the embedded server stands in.
"""

from __future__ import annotations

import asyncio
import os
import uuid
import warnings
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from app.storage import migrations
from app.storage.embedded import start_embedded
from tests.support import reachable, with_database

_T = TypeVar("_T")
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
def scratch_database(admin: str, *, migrate: bool = True, label: str = "") -> Iterator[str]:
    """Create `sluice_bench_<hex>[_label]`, migrate it to head unless told not to (a peer's
    database: the peer creates its own table), yield its URL; drop it on exit."""
    name = f"sluice_bench_{uuid.uuid4().hex[:12]}" + (f"_{label}" if label else "")
    asyncio.run(_execute(admin, f'CREATE DATABASE "{name}"'))
    try:
        url = with_database(admin, name)
        if migrate:
            migrations.upgrade(url)
        yield url
    finally:
        asyncio.run(_execute(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# The server's own processes that work for every database: under the bench's load, for it.
_SHARED_BACKENDS = ("walwriter", "checkpointer", "background writer")


async def _server_pids(url: str) -> set[int]:
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch(
            "SELECT pid FROM pg_stat_activity"
            " WHERE (datname = current_database() AND pid <> pg_backend_pid())"
            " OR backend_type = ANY($1::text[])",
            list(_SHARED_BACKENDS),
        )
        return {int(row["pid"]) for row in rows}
    finally:
        await connection.close()


def server_pids(url: str) -> set[int]:
    """PostgreSQL processes working for the database at `url`: its backends (not this
    query's) and the server's WAL writer, checkpointer and background writer."""
    return asyncio.run(_server_pids(url))


def checkpoint(admin: str) -> None:
    """Flush dirty pages so neither phase pays for the other's writes; needs superuser
    (or pg_checkpoint), skipped without it."""
    with suppress(asyncpg.InsufficientPrivilegeError):
        asyncio.run(_execute(admin, "CHECKPOINT"))


async def _count(url: str, table: str, source_prefix: str) -> int:
    connection = await asyncpg.connect(url)
    try:
        count: int = await connection.fetchval(
            f"SELECT count(*) FROM {table} WHERE source LIKE $1 || '%'",  # noqa: S608 - ours
            source_prefix,
        )
        return count
    finally:
        await connection.close()


def count_events(url: str, *, table: str = "events", source_prefix: str = "") -> int:
    """Rows of `table` whose source starts with `source_prefix` (a run's own tag)."""
    return asyncio.run(_count(url, table, source_prefix))


def run(coroutine: Coroutine[Any, Any, _T]) -> _T:
    """Run one coroutine to completion (the bench itself is synchronous)."""
    return asyncio.run(coroutine)


async def _version(url: str) -> str:
    connection = await asyncpg.connect(url)
    try:
        version: str = await connection.fetchval("SHOW server_version")
        return version
    finally:
        await connection.close()


def server_version(url: str) -> str:
    return asyncio.run(_version(url))
