"""Connection URLs and the asyncpg pool.

One `DATABASE_URL` serves two drivers: asyncpg on the hot path takes `postgresql://`,
SQLAlchemy (Alembic) takes `postgresql+asyncpg://`. Both are derived here.
"""

from __future__ import annotations

import asyncpg

from app.config import DatabaseSettings

_SCHEMES = ("postgresql+asyncpg://", "postgres://", "postgresql://")


def asyncpg_dsn(url: str) -> str:
    for scheme in _SCHEMES:
        if url.startswith(scheme):
            return "postgresql://" + url.removeprefix(scheme)
    raise ValueError("DATABASE_URL must start with postgresql:// (or postgres://)")


def sqlalchemy_url(url: str) -> str:
    return "postgresql+asyncpg://" + asyncpg_dsn(url).removeprefix("postgresql://")


async def _end_open_transaction(connection: asyncpg.Connection) -> None:
    """Pool release hook, instead of asyncpg's `RESET ALL; UNLISTEN *; ...`: a round trip
    per released connection, on every batch. Sluice sets no session state after connect
    and releases its advisory locks itself; an open transaction is all that can remain."""
    if connection.is_in_transaction():
        await connection.execute("ROLLBACK")


async def create_pool(url: str, settings: DatabaseSettings) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        asyncpg_dsn(url),
        min_size=settings.pool_min_size,
        max_size=max(settings.pool_min_size, settings.pool_max_size),
        command_timeout=settings.command_timeout_s,
        timeout=settings.connect_timeout_s,
        # UTC sessions: partition bounds and timestamps read back the same everywhere.
        server_settings={"application_name": "sluice", "timezone": "UTC"},
        reset=_end_open_transaction,
    )
    if pool is None:  # only a pool created without awaiting it is None
        raise RuntimeError("asyncpg returned no pool")
    return pool
