"""Fixtures of the fault tests: PostgreSQL clusters they own, fresh databases, the report.

Each fault test prints one line of counts (`[fault:NAME] sent=… acknowledged=… stored=…
duplicates=… lost=…`) straight to the terminal, even when pytest captures output.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from app.storage import migrations
from app.storage.backup import BackupError, pg_tool
from tests.conftest import in_ci
from tests.faults.cluster import Cluster, create_database, scratch_root

Report = Callable[[str], None]


@pytest.fixture
def fault_report(capsys: pytest.CaptureFixture[str]) -> Report:
    def report(line: str) -> None:
        with capsys.disabled():
            print(f"\n{line}")

    return report


@pytest.fixture(scope="session")
def postgres_programs() -> None:
    """initdb, pg_ctl, pg_basebackup, pg_dump, pg_restore: failing under CI when missing."""
    try:
        for name in ("initdb", "pg_ctl", "pg_basebackup", "pg_dump", "pg_restore"):
            pg_tool(name)
    except BackupError as exc:
        if in_ci():
            pytest.fail(f"{exc}; under CI=true that is a failure (make tools-faults)")
        pytest.skip(str(exc))


@pytest.fixture
def scratch(postgres_programs: None) -> Iterator[Path]:
    with scratch_root() as root:
        yield root


@pytest.fixture
async def own_cluster(scratch: Path) -> Cluster:
    """A single PostgreSQL server of this test's own, with a migrated `sluice` database."""
    cluster = Cluster(scratch, "primary")
    cluster.init()
    cluster.start()
    await create_database(cluster)
    await asyncio.to_thread(migrations.upgrade, cluster.url())
    return cluster


@pytest.fixture
async def migrated_database(fresh_database: str) -> str:
    """An empty database of this test's own on the shared server, migrated to head."""
    await asyncio.to_thread(migrations.upgrade, fresh_database)
    return fresh_database
