"""Acceptance 6: Alembic upgrade → downgrade → upgrade on a real database, and the models
(the schema's source of truth) match what the migrations build."""

from __future__ import annotations

import asyncio

import asyncpg
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection

from app.storage import migrations
from app.storage.database import sqlalchemy_engine
from app.storage.migrations import include_name
from app.storage.models import Base


async def _tables(url: str) -> set[str]:
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch(
            "SELECT tablename FROM pg_tables "
            "WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
        )
    finally:
        await connection.close()
    return {row["tablename"] for row in rows}


async def test_upgrade_downgrade_upgrade(fresh_database: str) -> None:
    await asyncio.to_thread(migrations.upgrade, fresh_database)
    assert {"events", "event_keys", "quarantine"} <= await _tables(fresh_database)

    await asyncio.to_thread(migrations.downgrade, fresh_database, "base")
    assert await _tables(fresh_database) == set()

    await asyncio.to_thread(migrations.upgrade, fresh_database)
    assert {"events", "event_keys", "quarantine"} <= await _tables(fresh_database)


async def test_models_match_migrations(database_url: str) -> None:
    def diff(connection: Connection) -> list[object]:
        context = MigrationContext.configure(
            connection, opts={"include_name": include_name, "compare_type": True}
        )
        return list(compare_metadata(context, Base.metadata))

    engine = sqlalchemy_engine(database_url)
    try:
        async with engine.connect() as connection:
            differences = await connection.run_sync(diff)
    finally:
        await engine.dispose()
    assert differences == []


async def test_events_table_is_partitioned_by_received_at(db: asyncpg.Connection) -> None:
    strategy = await db.fetchval(
        "SELECT partstrat::text FROM pg_partitioned_table WHERE partrelid = 'events'::regclass"
    )
    assert strategy == "r"
    indexes = {
        row["indexname"]
        for row in await db.fetch("SELECT indexname FROM pg_indexes WHERE tablename = 'events'")
    }
    assert {"ix_events_type_received_at", "ix_events_subject_pseudonym"} <= indexes
