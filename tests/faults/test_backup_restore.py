"""Backup and restore: `python -m app backup PATH` / `restore PATH`.

A populated database (events, quarantine rows, idempotency keys) is backed up through a
two-host URL, restored into a new, empty database, and compared: row counts per table
and a checksum over every stored event. Restore refuses an archive from a newer schema,
one that does not match its recorded checksum, and a target that already has a schema.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import asyncpg
import orjson
import pytest

from tests.conftest import SettingsFactory, running_app
from tests.faults.conftest import Report
from tests.integration.test_libpq_urls import multi_host
from tests.support import make_event, run_app, unique_source, with_database

pytestmark = pytest.mark.usefixtures("postgres_programs")  # pg_dump, pg_restore
TABLES = ("events", "event_keys", "quarantine", "alembic_version")
EVENTS_CHECKSUM = """
SELECT count(*) AS n, md5(string_agg(
    concat_ws('|', source, id, type, time, subject_pseudonym, data::text, received_at,
              policy_version),
    ',' ORDER BY source, id)) AS checksum
FROM events
"""


async def _populate(make_settings: SettingsFactory, url: str) -> None:
    source = unique_source("backup")
    async with running_app(make_settings(url=url)) as client:
        for batch in range(10):
            events = [make_event(source, f"{batch}-{n}") for n in range(100)]
            events[0] = {"id": f"bad-{batch}", "source": source}  # quarantined
            response = await client.post(
                "/ingest",
                content=orjson.dumps(events),
                headers={"content-type": "application/cloudevents-batch+json"},
            )
            assert response.status_code == 207


async def _facts(url: str) -> dict[str, object]:
    connection = await asyncpg.connect(url)
    try:
        facts: dict[str, object] = {
            table: await connection.fetchval(f"SELECT count(*) FROM {table}")  # noqa: S608
            for table in TABLES
        }
        row = await connection.fetchrow(EVENTS_CHECKSUM)
        facts["events_checksum"] = row["checksum"] if row else None
    finally:
        await connection.close()
    return facts


async def _create(admin_url: str) -> str:
    name = f"sluice_restored_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return with_database(admin_url, name)


async def _drop(admin_url: str, url: str) -> None:
    admin = await asyncpg.connect(admin_url)
    try:
        name = url.split("?", maxsplit=1)[0].rsplit("/", 1)[1]
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def test_backup_then_restore_into_a_new_database(
    migrated_database: str,
    admin_url: str,
    make_settings: SettingsFactory,
    tmp_path: Path,
    fault_report: Report,
) -> None:
    await _populate(make_settings, migrated_database)
    archive = tmp_path / "sluice.dump"
    backed_up = run_app("backup", str(archive), env={"DATABASE_URL": multi_host(migrated_database)})
    assert backed_up.returncode == 0, backed_up.stderr
    metadata = orjson.loads((tmp_path / "sluice.dump.meta.json").read_bytes())
    target = await _create(admin_url)
    try:
        restored = run_app("restore", str(archive), env={"DATABASE_URL": target})
        assert restored.returncode == 0, restored.stderr
        original, copy = await _facts(migrated_database), await _facts(target)
        again = run_app("restore", str(archive), env={"DATABASE_URL": target})
    finally:
        await _drop(admin_url, target)
    fault_report(f"[backup-restore] original={original} restored={copy}")

    assert original == copy
    assert original["events"] == 990
    assert original["quarantine"] == 10
    assert metadata["schema_revision"] == orjson.loads(restored.stdout)["schema_revision"]
    assert again.returncode == 1
    assert "already holds a Sluice schema" in again.stderr


async def test_restore_refuses_a_newer_schema_and_a_damaged_archive(
    migrated_database: str, admin_url: str, tmp_path: Path
) -> None:
    archive = tmp_path / "sluice.dump"
    assert run_app("backup", str(archive), env={"DATABASE_URL": migrated_database}).returncode == 0
    side = tmp_path / "sluice.dump.meta.json"
    metadata = orjson.loads(side.read_bytes())
    target = await _create(admin_url)
    try:
        side.write_bytes(orjson.dumps({**metadata, "schema_revision": "ffffffffffff"}))
        newer = run_app("restore", str(archive), env={"DATABASE_URL": target})
        side.write_bytes(orjson.dumps(metadata))
        archive.write_bytes(archive.read_bytes()[:-100])
        damaged = run_app("restore", str(archive), env={"DATABASE_URL": target})
        untouched = await _facts_or_none(target)
    finally:
        await _drop(admin_url, target)

    assert newer.returncode == 1
    assert "newer than this code knows" in newer.stderr
    assert damaged.returncode == 1
    assert "checksum" in damaged.stderr
    assert untouched is None  # refused before anything was written


async def _facts_or_none(url: str) -> object:
    connection = await asyncpg.connect(url)
    try:
        return await connection.fetchval("SELECT to_regclass('alembic_version')")
    finally:
        await connection.close()
