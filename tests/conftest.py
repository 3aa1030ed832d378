"""Fixtures: a real PostgreSQL, one fresh database per test session, apps on top of it.

PostgreSQL comes from `SLUICE_TEST_ADMIN_DATABASE_URL` (default: this machine's server
at 127.0.0.1:5432). When it is unreachable, the embedded server (`pgserver`) stands in,
except under `CI=true`, where an unreachable database fails the run instead: CI must
prove the real service works, not quietly test something else.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager

from app.config import (
    BatchSettings,
    ContractSettings,
    DatabaseSettings,
    LimitSettings,
    PrivacySettings,
    PubSubSettings,
    QualitySettings,
    Settings,
)
from app.main import create_app
from app.storage import migrations
from app.storage.embedded import ensure_database, start_embedded
from tests.support import PROJECT_ROOT, PrivatePostgres, reachable, with_database

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def pytest_report_header() -> str:
    """The first lines of `make test` say which PostgreSQL the tests use."""
    url = os.environ.get("SLUICE_TEST_ADMIN_DATABASE_URL", DEFAULT_ADMIN_URL)
    if asyncio.run(reachable(url)):
        return (
            f"PostgreSQL for the tests: {_without_password(url)} (SLUICE_TEST_ADMIN_DATABASE_URL)"
        )
    if in_ci():
        return f"PostgreSQL: {_without_password(url)} is unreachable, and CI=true: tests fail"
    return f"PostgreSQL: {_without_password(url)} is unreachable: the embedded one under .data/"


def _without_password(url: str) -> str:
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)


@pytest.fixture(scope="session")
async def admin_url() -> str:
    url = os.environ.get("SLUICE_TEST_ADMIN_DATABASE_URL", DEFAULT_ADMIN_URL)
    if await reachable(url):
        _SERVERS_USED.add(url)
        return url
    if in_ci():
        pytest.fail(f"PostgreSQL is unreachable at {url}; under CI=true that is a failure")
    embedded = start_embedded(str(PROJECT_ROOT / ".data" / "test-postgres"), keep_running=True)
    server = embedded.replace("/sluice?", "/postgres?", 1)
    _SERVERS_USED.add(server)
    return server


ROLE_KINDS = ("owner", "writer", "maintainer", "eraser", "analyst")


# The servers this session reached: where its roles are dropped at the end.
_SERVERS_USED: set[str] = set()


@pytest.fixture(scope="session", autouse=True)
async def session_roles() -> AsyncIterator[dict[str, str]]:
    """Database role names of this session's own: roles are cluster-wide, and sessions of
    several worktrees share the server. Set in the environment so every migration, in
    this process or a child, grants these; dropped when the session ends from every
    server it used (none for a run of unit tests)."""
    tag = uuid.uuid4().hex[:8]
    names = {kind: f"sluice_t{tag}_{kind}" for kind in ROLE_KINDS}
    saved = {kind: os.environ.get(f"SLUICE_DB_ROLE_{kind.upper()}") for kind in ROLE_KINDS}
    os.environ.update({f"SLUICE_DB_ROLE_{kind.upper()}": name for kind, name in names.items()})
    try:
        yield names
    finally:
        for kind, value in saved.items():
            os.environ.pop(f"SLUICE_DB_ROLE_{kind.upper()}", None)
            if value is not None:
                os.environ[f"SLUICE_DB_ROLE_{kind.upper()}"] = value
        for server in _SERVERS_USED:
            await drop_roles(server, names.values())


async def drop_roles(admin_url: str, names: Iterable[str]) -> None:
    """Drop roles whose databases are gone (members first: the maintainer holds the owner)."""
    admin = await asyncpg.connect(admin_url)
    try:
        for name in names:
            await admin.execute(f'DROP ROLE IF EXISTS "{name}"')
    finally:
        await admin.close()


@pytest.fixture(scope="session")
async def database_url(admin_url: str) -> AsyncIterator[str]:
    """A database of this session's own, migrated to head, dropped at the end."""
    name = f"sluice_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = with_database(admin_url, name)
        await asyncio.to_thread(migrations.upgrade, url)
        yield url
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
async def fresh_database(admin_url: str) -> AsyncIterator[str]:
    """An empty database of this test's own (not migrated), dropped afterwards: for tests
    that change schema or drop partitions, which would disturb the shared one."""
    name = f"sluice_fresh_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield with_database(admin_url, name)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database_url)
    try:
        yield connection
    finally:
        await connection.close()


SettingsFactory = Callable[..., Settings]


@pytest.fixture
def make_settings(database_url: str) -> SettingsFactory:
    """Settings for the test database; keyword groups (`batch={...}`) override defaults."""

    def build(
        *,
        batch: dict[str, Any] | None = None,
        limits: dict[str, Any] | None = None,
        db: dict[str, Any] | None = None,
        privacy: dict[str, Any] | None = None,
        pubsub: dict[str, Any] | None = None,
        contracts: dict[str, Any] | None = None,
        quality: dict[str, Any] | None = None,
        url: str | None = None,
        admin_token: str | None = None,
    ) -> Settings:
        return Settings(
            database_url=url or database_url,
            env="test",
            admin_token=admin_token,
            privacy=PrivacySettings(**(privacy or {})),
            pubsub=PubSubSettings(**(pubsub or {})),
            contracts=ContractSettings(**(contracts or {})),
            quality=QualitySettings(**(quality or {})),
            batch=BatchSettings(**(batch or {})),
            limits=LimitSettings(**(limits or {})),
            db=DatabaseSettings(**{"pool_min_size": 1, "pool_max_size": 4, **(db or {})}),
        )

    return build


AppFactory = Callable[[Settings], AbstractAsyncContextManager[httpx.AsyncClient]]


@asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The real app with its lifespan, reached in-process over ASGI."""
    app = create_app(settings)
    async with (
        LifespanManager(app, startup_timeout=30, shutdown_timeout=60) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app),
            base_url="http://sluice.test",
            timeout=60,
        ) as client,
    ):
        yield client


@pytest.fixture
async def client(make_settings: SettingsFactory) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(make_settings()) as app_client:
        yield app_client


@pytest.fixture
async def private_postgres() -> AsyncIterator[PrivatePostgres]:
    directory = Path(tempfile.mkdtemp(prefix="sluice-pg-"))
    server = PrivatePostgres(directory / "data")
    await asyncio.to_thread(server.start)
    try:
        await ensure_database(server.url)
        await asyncio.to_thread(migrations.upgrade, server.url)
        yield server
    finally:
        await asyncio.to_thread(server.stop)
        shutil.rmtree(directory, ignore_errors=True)
