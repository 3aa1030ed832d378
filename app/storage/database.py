"""Connection URLs, the asyncpg pool, the SQLAlchemy engine of Alembic, and the guard.

`DATABASE_URL` is a libpq URL and stays one, whole, for every command: several hosts
(`postgresql://u@pg-a:5432,pg-b:5432/sluice?target_session_attrs=read-write`), `sslmode`,
`sslrootcert`, `application_name`, a Unix socket (`?host=/run/postgresql`). asyncpg reads
all of that; SQLAlchemy's URL parser cannot hold several hosts, so SQLAlchemy (Alembic)
never parses it: its engine gets each connection from asyncpg (`async_creator`).
"""

from __future__ import annotations

import functools
from urllib.parse import parse_qs, urlsplit

import asyncpg
from sqlalchemy import pool as sqlalchemy_pool
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.config import DatabaseSettings, Settings
from app.storage.breaker import DatabaseBreaker
from app.storage.retry import RetryPolicy

_SCHEMES = ("postgresql+asyncpg://", "postgres://", "postgresql://")
_DEFAULT_APPLICATION_NAME = "sluice"


def asyncpg_dsn(url: str) -> str:
    """`url` with the scheme asyncpg wants; hosts, ports and parameters untouched."""
    for scheme in _SCHEMES:
        if url.startswith(scheme):
            return "postgresql://" + url.removeprefix(scheme)
    raise ValueError("DATABASE_URL must start with postgresql:// (or postgres://)")


def sqlalchemy_engine(url: str) -> AsyncEngine:
    """An engine whose every connection asyncpg opens from the libpq URL itself; no
    pooling (migrations and schema checks connect once)."""
    return create_async_engine(
        "postgresql+asyncpg://",
        async_creator=functools.partial(asyncpg.connect, asyncpg_dsn(url)),
        poolclass=sqlalchemy_pool.NullPool,
    )


async def _end_open_transaction(connection: asyncpg.Connection) -> None:
    """Pool release hook, instead of asyncpg's `RESET ALL; UNLISTEN *; ...`: a round trip
    per released connection, on every batch. Sluice sets no session state after connect
    and releases its advisory locks itself; an open transaction is all that can remain."""
    if connection.is_in_transaction():
        await connection.execute("ROLLBACK")


def _server_settings(dsn: str) -> dict[str, str]:
    # UTC sessions: partition bounds and timestamps read back the same everywhere.
    # asyncpg lets explicit server settings win over the URL's: name the application only
    # when the URL does not.
    settings = {"timezone": "UTC"}
    if "application_name" not in parse_qs(urlsplit(dsn).query):
        settings["application_name"] = _DEFAULT_APPLICATION_NAME
    return settings


async def create_pool(url: str, settings: DatabaseSettings) -> asyncpg.Pool:
    dsn = asyncpg_dsn(url)
    pool = await asyncpg.create_pool(
        dsn,
        min_size=settings.pool_min_size,
        max_size=max(settings.pool_min_size, settings.pool_max_size),
        command_timeout=settings.command_timeout_s,
        timeout=settings.connect_timeout_s,
        server_settings=_server_settings(dsn),
        reset=_end_open_transaction,
    )
    if pool is None:  # only a pool created without awaiting it is None
        raise RuntimeError("asyncpg returned no pool")
    return pool


def database_guard(pool: asyncpg.Pool, settings: Settings) -> tuple[DatabaseBreaker, RetryPolicy]:
    """The process's circuit breaker and the retry policy every writer shares."""
    breaker = DatabaseBreaker(
        failure_threshold=settings.db.breaker_failures, reset_after_s=settings.db.breaker_reset_s
    )
    policy = RetryPolicy.for_pool(
        pool, max_backoff_s=settings.batch.retry_max_backoff_s, breaker=breaker
    )
    return breaker, policy
