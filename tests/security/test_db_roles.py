"""Acceptance 2: least privilege in PostgreSQL. A login in the writer role cannot drop,
alter, truncate, delete or update events, cannot read `subject_audit`, and still runs the
whole ingest path; a login in the analyst role reads events and nothing else.

The session's role names are its own (`session_roles` in conftest: roles are
cluster-wide), and each test's login users are dropped afterwards."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest
from pydantic import SecretStr

from app.config import DatabaseSettings, Settings
from app.storage import migrations
from tests.conftest import running_app
from tests.support import make_event, unique_source

Login = Callable[[str], Awaitable[str]]

WRITER_DENIED = [
    "DROP TABLE events",
    "ALTER TABLE events ADD COLUMN sneaky text",
    "TRUNCATE events",
    "DELETE FROM events",
    "UPDATE events SET type = 'x'",
    "SELECT * FROM subject_audit",
    "DELETE FROM event_keys",
    "DELETE FROM quarantine",
    "DELETE FROM api_keys",
    "UPDATE api_keys SET scopes = '{admin:write}'",
    "CREATE TABLE planted (x int)",
]
ANALYST_DENIED = [
    "SELECT * FROM quarantine",
    "SELECT * FROM event_keys",
    "SELECT * FROM subject_audit",
    "SELECT * FROM suppressed_subjects",
    "SELECT * FROM api_keys",
    "SELECT * FROM admin_audit",
    "INSERT INTO events (source, id, type, specversion, received_at) "
    "VALUES ('/a', '1', 't', '1.0', now())",
    "DELETE FROM events",
    "UPDATE events SET type = 'x'",
    "CREATE TABLE planted (x int)",
]


@pytest.fixture
async def login(admin_url: str, database_url: str) -> AsyncIterator[Login]:
    """`await login(role)`: the URL of a fresh login user in that group role."""
    if "://postgres@" not in database_url:
        pytest.skip("role logins need the TCP server with trust auth (not the embedded one)")
    admin = await asyncpg.connect(admin_url)
    local = await asyncpg.connect(database_url)  # what a user owns is dropped per database
    made: list[str] = []

    async def create(role: str) -> str:
        user = f"sluice_login_{uuid.uuid4().hex[:10]}"
        await admin.execute(f'CREATE ROLE "{user}" LOGIN IN ROLE "{role}"')
        made.append(user)
        return database_url.replace("://postgres@", f"://{user}@", 1)

    try:
        yield create
    finally:
        for user in made:
            await local.execute(f'DROP OWNED BY "{user}"')
            await admin.execute(f'DROP ROLE IF EXISTS "{user}"')
        await local.close()
        await admin.close()


async def _refused(url: str, statements: list[str]) -> list[str]:
    """The statements PostgreSQL refused for lack of privilege (each in its own try)."""
    connection = await asyncpg.connect(url)
    refused = []
    try:
        for statement in statements:
            try:
                await connection.execute(statement)
            except asyncpg.InsufficientPrivilegeError:
                refused.append(statement)
    finally:
        await connection.close()
    return refused


async def test_writer_cannot_change_or_read_what_it_does_not_need(
    login: Login, session_roles: dict[str, str]
) -> None:
    writer = await login(session_roles["writer"])
    assert await _refused(writer, WRITER_DENIED) == WRITER_DENIED


async def test_writer_runs_the_ingest_path_and_eraser_the_subject_rights(
    login: Login, session_roles: dict[str, str], db: asyncpg.Connection
) -> None:
    writer = await login(session_roles["writer"])
    maintainer = await login(session_roles["maintainer"])
    eraser = await login(session_roles["eraser"])
    token = "t" * 40
    settings = Settings(
        database_url=writer,
        env="test",
        admin_token=token,
        db=DatabaseSettings(
            pool_min_size=1,
            pool_max_size=4,
            # Partitions it makes then belong to the owner role (docs/security.md).
            maintainer_url=SecretStr(f"{maintainer}?role={session_roles['owner']}"),
            eraser_url=SecretStr(eraser),
        ),
    )
    source = unique_source("roles")
    async with running_app(settings) as client:
        stored = await client.post(
            "/ingest", json=[make_event(source, 1, subject="role@example.com"), {"id": "bad"}]
        )
        assert stored.status_code == 207, stored.text  # an event and a quarantine row
        again = await client.post("/ingest", json=make_event(source, 1))
        assert again.json()["duplicate"] == 1
        admin = {"Authorization": f"Bearer {token}"}
        assert (await client.get("/admin/quarantine", headers=admin)).status_code == 200
        assert (await client.get("/admin/quality", headers=admin)).status_code == 200
        erased = await client.post(
            "/admin/subjects:erase",
            json={"subjects": ["role@example.com"], "requester": "roles test"},
            headers=admin,
        )
        assert erased.status_code == 200, erased.text
        assert erased.json()["events_deleted"] == 1
        assert (await client.get("/health/ready")).status_code == 200
    assert await db.fetchval("SELECT count(*) FROM events WHERE source = $1", source) == 0
    assert await db.fetchval("SELECT count(*) FROM event_keys WHERE source = $1", source) == 1
    strangers = await db.fetchval(
        "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'events'::regclass AND pg_get_userbyid(c.relowner) LIKE $1",
        "sluice_login_%",
    )
    assert strangers == 0


async def test_analyst_reads_events_and_nothing_else(
    login: Login, session_roles: dict[str, str]
) -> None:
    analyst = await login(session_roles["analyst"])
    connection = await asyncpg.connect(analyst)
    try:
        assert await connection.fetchval("SELECT count(*) FROM events") >= 0
    finally:
        await connection.close()
    assert await _refused(analyst, ANALYST_DENIED) == ANALYST_DENIED


async def test_roles_migration_is_idempotent_when_the_roles_exist(
    fresh_database: str, session_roles: dict[str, str]
) -> None:
    # The session's roles exist already in the cluster (the session database made them).
    await asyncio.to_thread(migrations.upgrade, fresh_database)
    connection = await asyncpg.connect(fresh_database)
    try:
        owner = await connection.fetchval(
            "SELECT tableowner FROM pg_tables WHERE tablename = 'events'"
        )
    finally:
        await connection.close()
    assert owner == session_roles["owner"]
