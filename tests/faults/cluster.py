"""PostgreSQL clusters a fault test owns: the machine's own binaries, a port of its own.

The machine's shared server is never stopped or killed; these are. `initdb`, `pg_ctl` and
`pg_basebackup` come from `pg_config --bindir` and refuse to run as root, so as root they
run as the system user `sluice-pg` (created here once, idempotently: the tests need it
wherever they run, `make test` or a bare `pytest`), in a scratch folder it owns.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg

from app.storage.backup import pg_tool
from tests.support import free_port

PG_USER = "sluice-pg"
_SETTINGS = """
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = '{socket_dir}'
wal_level = replica
max_wal_senders = 4
hot_standby = on
max_connections = 60
shared_buffers = 16MB
log_min_messages = warning
"""


def _as_pg_user() -> list[str]:
    """The command prefix that runs a PostgreSQL server program as a non-root user."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam(PG_USER)
    except KeyError:
        subprocess.run(  # noqa: S603
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_USER],  # noqa: S607
            check=True,
            capture_output=True,
        )
    return ["runuser", "-u", PG_USER, "--"]


def _run(*argv: str, timeout: float = 60) -> None:
    done = subprocess.run(  # noqa: S603 - PostgreSQL's own programs, our arguments
        [*_as_pg_user(), *argv], capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{Path(argv[0]).name} failed: {done.stdout}\n{done.stderr}")


class Cluster:
    """One PostgreSQL server (a primary, or a streaming replica of one)."""

    def __init__(self, root: Path, name: str) -> None:
        self.data = root / name
        self.port = free_port()
        self.log = root / f"{name}.log"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, database: str = "sluice") -> str:
        return f"postgresql://postgres@{self.address}/{database}"

    def init(self) -> None:
        _run(pg_tool("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-N")
        self._configure()
        with (self.data / "pg_hba.conf").open("a") as hba:
            hba.write("host replication all 127.0.0.1/32 trust\n")

    def replica(self, name: str) -> Cluster:
        """A streaming replica of this (running) server, configured but not started."""
        standby = Cluster(self.data.parent, name)
        _run(
            pg_tool("pg_basebackup"),
            *("-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"),
            *("-D", str(standby.data), "-R", "-X", "stream"),
        )
        standby._configure()  # later lines win: its own port and socket folder
        return standby

    def _configure(self) -> None:
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(_SETTINGS.format(port=self.port, socket_dir=self.data))

    def start(self) -> None:
        _run(
            pg_tool("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start"
        )

    def stop(self, mode: str = "fast") -> None:
        _run(pg_tool("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def kill(self) -> None:
        """A crash: SIGKILL of the postmaster (its children notice and die with it)."""
        pid = int((self.data / "postmaster.pid").read_text().splitlines()[0])
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 0)
                time.sleep(0.05)
                continue
            return

    def promote(self) -> None:
        _run(pg_tool("pg_ctl"), "-D", str(self.data), "-w", "promote")

    def reload(self) -> None:
        _run(pg_tool("pg_ctl"), "-D", str(self.data), "reload")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()


async def create_database(cluster: Cluster, name: str = "sluice") -> None:
    connection = await asyncpg.connect(cluster.url("postgres"))
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


async def make_synchronous(primary: Cluster) -> None:
    """Commits on `primary` wait for its (one) standby; returns once that standby is in
    synchronous state."""
    connection = await asyncpg.connect(primary.url("postgres"))
    try:
        await connection.execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
        await connection.execute("SELECT pg_reload_conf()")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            state = await connection.fetchval("SELECT sync_state FROM pg_stat_replication")
            if state == "sync":
                return
            await asyncio.sleep(0.1)
        raise TimeoutError("the standby did not become synchronous")
    finally:
        await connection.close()


@contextlib.contextmanager
def scratch_root() -> Iterator[Path]:
    """A folder the PostgreSQL user may write, removed afterwards with every cluster in it
    (each stopped first, whatever state the test left it in)."""
    root = Path(tempfile.mkdtemp(prefix="sluice-faults-"))
    if os.geteuid() == 0:
        _as_pg_user()
        shutil.chown(root, user=PG_USER)
    try:
        yield root
    finally:
        for pid_file in root.glob("*/postmaster.pid"):
            with contextlib.suppress(Exception):
                os.kill(int(pid_file.read_text().splitlines()[0]), signal.SIGKILL)
        shutil.rmtree(root, ignore_errors=True)
