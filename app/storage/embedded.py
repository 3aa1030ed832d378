"""An embedded PostgreSQL for `make run` on a machine with no database configured.

`pgserver` ships real PostgreSQL binaries in a wheel; the server keeps its data under
`SLUICE_DB_EMBEDDED_DIR` (default `./.data/postgres`) and listens on a Unix socket only.
Never used when `DATABASE_URL` is set, and refused in production.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import asyncpg

log = logging.getLogger(__name__)

DATABASE = "sluice"


def start_embedded(data_dir: str, *, keep_running: bool) -> str:
    """Start (or reuse) the server; return a DATABASE_URL for the `sluice` database."""
    path = Path(data_dir).resolve()
    log.info(
        "starting the embedded PostgreSQL (DATABASE_URL is unset)", extra={"data_dir": str(path)}
    )
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI, sudo): harmless.
        warnings.filterwarnings("ignore", module="platformdirs")
        import pgserver  # noqa: PLC0415 - optional dependency, needed only here

        path.parent.mkdir(parents=True, exist_ok=True)
        server = pgserver.get_server(path, cleanup_mode=None if keep_running else "stop")
    uri: str = server.get_uri()
    log.info("embedded PostgreSQL ready", extra={"data_dir": str(path)})
    return uri.replace("/postgres?", f"/{DATABASE}?", 1)


async def ensure_database(url: str) -> None:
    """Create the target database when it is missing (the embedded server starts empty)."""
    admin_url = url.replace(f"/{DATABASE}?", "/postgres?", 1)
    connection = await asyncpg.connect(admin_url)
    try:
        exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE)
        if not exists:
            await connection.execute(f'CREATE DATABASE "{DATABASE}"')
    finally:
        await connection.close()
