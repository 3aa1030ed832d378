"""`DATABASE_URL` is a libpq URL, kept whole by every command: several hosts with
`target_session_attrs`, `application_name`, `sslmode`, a Unix socket.

The first host of the multi-host URL is a port nobody listens on, so a command that
dropped all hosts but one (as SQLAlchemy's URL parser does) or ignored the list would
fail; the second is this machine's PostgreSQL. (The failover fault test runs `serve
--workers 2`, `consume`, `migrate` and `maintain` on a two-host URL of two real servers.)
"""

from __future__ import annotations

import asyncpg
import httpx
import orjson
import pytest

from tests.conftest import in_ci
from tests.support import free_port, make_event, run_app, served, unique_source


def _parts(url: str) -> tuple[str, str]:
    """(host:port, database) of a plain one-host test URL."""
    rest = url.removeprefix("postgresql://").split("?", 1)[0]
    address, database = rest.rsplit("/", 1)
    return address.rsplit("@", 1)[-1], database


def multi_host(url: str) -> str:
    address, database = _parts(url)
    return (
        f"postgresql://postgres@127.0.0.1:{free_port()},{address}/{database}"
        "?target_session_attrs=read-write&application_name=sluice-url-test&sslmode=disable"
    )


async def _socket_url(url: str) -> str:
    connection = await asyncpg.connect(url)
    try:
        directories = await connection.fetchval("SHOW unix_socket_directories")
        port = await connection.fetchval("SHOW port")
    finally:
        await connection.close()
    directory = directories.split(",")[0].strip()
    if not directory:
        message = "the server listens on no Unix socket"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return f"postgresql://postgres@/{_parts(url)[1]}?host={directory}&port={port}"


async def _revision(url: str) -> str | None:
    connection = await asyncpg.connect(url)
    try:
        if not await connection.fetchval("SELECT to_regclass('alembic_version') IS NOT NULL"):
            return None
        return await connection.fetchval("SELECT version_num FROM alembic_version")  # type: ignore[no-any-return]
    finally:
        await connection.close()


async def test_every_command_keeps_the_hosts(fresh_database: str) -> None:
    url = multi_host(fresh_database)
    env = {"DATABASE_URL": url}

    migrated = run_app("migrate", env=env)
    assert migrated.returncode == 0, migrated.stderr
    assert await _revision(fresh_database) is not None
    maintained = run_app("maintain", env=env)
    assert maintained.returncode == 0, maintained.stderr
    replayed = run_app("replay", "--dry-run", env=env)
    assert replayed.returncode == 0, replayed.stderr
    downgraded = run_app("downgrade", "base", env=env)
    assert downgraded.returncode == 0, downgraded.stderr
    assert await _revision(fresh_database) is None


async def test_unix_socket_url_for_migrate_and_serve(fresh_database: str) -> None:
    url = await _socket_url(fresh_database) + "&application_name=sluice-url-test"
    migrated = run_app("migrate", env={"DATABASE_URL": url})
    assert migrated.returncode == 0, migrated.stderr
    source = unique_source("socket")
    env = {"DATABASE_URL": url, "SLUICE_LOG_LEVEL": "WARNING"}
    with served(env, probe="ready") as (base_url, _):
        async with httpx.AsyncClient() as http:
            response = await http.post(
                f"{base_url}/ingest",
                content=orjson.dumps(make_event(source, 1)),
                headers={"content-type": "application/json"},
            )
        names = await _application_names(fresh_database)
    assert response.status_code == 200
    assert response.json()["stored"] == 1
    assert "sluice-url-test" in names  # the URL's own parameter, not the default


async def _application_names(url: str) -> set[str]:
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch(
            "SELECT application_name FROM pg_stat_activity WHERE datname = current_database()"
        )
    finally:
        await connection.close()
    return {row["application_name"] for row in rows}
