"""Alembic environment, async: runs migrations over an asyncpg connection.

The database URL is a libpq URL, kept whole (several hosts, `target_session_attrs`,
`sslmode`, a Unix socket): asyncpg opens the connection from it and SQLAlchemy only wraps
that connection, since SQLAlchemy's URL parser cannot hold several hosts. The URL comes
from the caller (`app.storage.migrations`), else `sqlalchemy.url` in `alembic.ini`, else
`DATABASE_URL`.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from app.config import Settings
from app.storage.database import sqlalchemy_engine
from app.storage.migrations import DATABASE_URL_ATTRIBUTE, include_name
from app.storage.models import Base

config = context.config
MIGRATION_LOCK = 0x534C5543_4D494752  # "SLUCMIGR": the advisory lock key of migrations
target_metadata = Base.metadata


def _url() -> str:
    given = config.attributes.get(DATABASE_URL_ATTRIBUTE) or config.get_main_option(
        "sqlalchemy.url"
    )
    if given:
        return str(given)
    url = Settings().database_url
    if url is None:
        raise RuntimeError("DATABASE_URL is not set")
    return url


def run_migrations_offline() -> None:
    # SQL output needs only the dialect, never a connection (nor a URL).
    context.configure(
        dialect_name="postgresql", target_metadata=target_metadata, literal_binds=True
    )
    with context.begin_transaction():
        context.run_migrations()


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection, target_metadata=target_metadata, include_name=include_name
    )
    with context.begin_transaction():
        # One migrator at a time across hosts and pods (two deploys racing): the others wait
        # here, then find the schema at head and do nothing. Released at commit.
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
        context.run_migrations()


async def run_migrations_online() -> None:
    engine = sqlalchemy_engine(_url())
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_migrations_online())
