"""`python -m app backup PATH` / `restore PATH`: pg_dump's custom format, with a side file.

The archive is PostgreSQL's own (`pg_dump -Fc`), restorable with `pg_restore` by hand.
Beside it, `PATH.meta.json` records the schema revision the archive holds (Alembic's
`alembic_version`), the archive's SHA-256, and when and from which server it was taken.

Restore refuses, before touching anything:
- an archive whose side file is missing, or whose checksum does not match (truncated or
  corrupted copies fail here, not halfway through);
- an archive from a newer schema than this code knows (a revision absent from
  `migrations/`): this code could neither write to it nor migrate it;
- a target database that already holds a Sluice schema: restore goes into an empty
  database, never over live data.

An archive from an older schema is restored as it is; `python -m app migrate` then
upgrades it. Both tools come from `pg_config --bindir` (the server's own version), else
from `PATH`. The libpq URL is passed to them whole, so a multi-host `DATABASE_URL` with
`target_session_attrs=read-write` backs up the primary.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess  # nosec B404 - pg_dump and pg_restore, with argument lists we build
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import orjson
from alembic.script import ScriptDirectory
from alembic.util import CommandError

from app.storage import migrations
from app.storage.database import asyncpg_dsn

_FORMAT = "pg_dump custom"


class BackupError(Exception):
    """The backup or restore did not happen; the message says why, in one line."""


@dataclass(frozen=True, slots=True)
class BackupReport:
    archive: str
    schema_revision: str | None
    bytes: int
    sha256: str
    events: int


@dataclass(frozen=True, slots=True)
class RestoreReport:
    archive: str
    schema_revision: str | None
    events: int
    needs_migration: bool  # older schema than this code's head: run `python -m app migrate`


def metadata_path(archive: Path) -> Path:
    return archive.with_name(archive.name + ".meta.json")


def pg_tool(name: str) -> str:
    """The PostgreSQL client program `name`: from `pg_config --bindir`, else from PATH."""
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        bindir = subprocess.run(  # noqa: S603  # nosec B603 - the machine's pg_config, no input of ours
            [pg_config, "--bindir"], capture_output=True, text=True, check=False
        ).stdout.strip()
        candidate = Path(bindir) / name
        if bindir and candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise BackupError(f"{name} not found (install the PostgreSQL client programs)")
    return found


def _libpq_url(url: str) -> str:
    return asyncpg_dsn(url)  # postgresql://…, exactly what libpq reads too


def _run(argv: list[str]) -> None:
    # PGCONNECT_TIMEOUT: a tool pointed at a dead host fails instead of hanging.
    env = {**os.environ, "PGCONNECT_TIMEOUT": os.environ.get("PGCONNECT_TIMEOUT", "10")}
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)  # noqa: S603  # nosec B603 - our argv, no shell
    if done.returncode != 0:
        tool = Path(argv[0]).name
        raise BackupError(f"{tool} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as archive:
        for chunk in iter(lambda: archive.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


async def _facts(url: str) -> tuple[str | None, int, str]:
    """The schema revision, the number of events and the server version."""
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        has_schema = await connection.fetchval("SELECT to_regclass('alembic_version') IS NOT NULL")
        revision = None
        events = 0
        if has_schema:
            revision = await connection.fetchval("SELECT version_num FROM alembic_version")
            events = await connection.fetchval("SELECT count(*) FROM events")
        version = await connection.fetchval("SHOW server_version")
        return revision, int(events), str(version)
    finally:
        await connection.close()


def backup(url: str, archive: Path) -> BackupReport:
    """Blocking (runs pg_dump): for the CLI, never for the event loop of the service."""
    revision, events, server_version = asyncio.run(_facts(url))
    if revision is None:
        raise BackupError(
            "the database holds no Sluice schema (no alembic_version): nothing to back up"
        )
    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = archive.with_name(archive.name + ".partial")
    _run(
        [pg_tool("pg_dump"), "--format=custom", f"--file={partial}", f"--dbname={_libpq_url(url)}"]
    )
    partial.replace(archive)  # never a half-written archive under the final name
    sha256 = _sha256(archive)
    metadata = {
        "format": _FORMAT,
        "schema_revision": revision,
        "sha256": sha256,
        "bytes": archive.stat().st_size,
        "events": events,
        "server_version": server_version,
        "created_at": datetime.now(UTC).isoformat(),
    }
    metadata_path(archive).write_bytes(orjson.dumps(metadata, option=orjson.OPT_INDENT_2))
    return BackupReport(str(archive), revision, archive.stat().st_size, sha256, events)


def _read_metadata(archive: Path) -> dict[str, object]:
    side = metadata_path(archive)
    if not archive.exists():
        raise BackupError(f"no archive at {archive}")
    if not side.exists():
        raise BackupError(f"no {side.name} beside the archive: its schema revision is unknown")
    metadata: dict[str, object] = orjson.loads(side.read_bytes())
    if metadata.get("format") != _FORMAT:
        raise BackupError(f"{side.name} describes no archive of this kind")
    if metadata.get("sha256") != _sha256(archive):
        raise BackupError("the archive does not match the checksum recorded at backup")
    return metadata


def schema_relation(revision: str | None) -> str:
    """`head`, `older` or `newer` than this code's migrations (unknown counts as newer)."""
    scripts = ScriptDirectory.from_config(migrations.alembic_config())
    head = scripts.get_current_head()
    if revision == head:
        return "head"
    try:
        known = revision is not None and scripts.get_revision(revision) is not None
    except CommandError:
        known = False
    if not known:
        return "newer"
    ancestors = {script.revision for script in scripts.iterate_revisions(head, "base")}
    return "older" if revision in ancestors else "newer"


def restore(url: str, archive: Path) -> RestoreReport:
    """Blocking (runs pg_restore): for the CLI."""
    metadata = _read_metadata(archive)
    revision = metadata.get("schema_revision")
    revision = revision if isinstance(revision, str) else None
    relation = schema_relation(revision)
    if relation == "newer":
        raise BackupError(
            f"the archive holds schema revision {revision}, newer than this code knows "
            f"(head {migrations.head_revision()}): restore it with the Sluice version that made it"
        )
    existing, _, _ = asyncio.run(_facts(url))
    if existing is not None:
        raise BackupError(
            "the target database already holds a Sluice schema: restore into an empty one"
        )
    _run(
        [
            pg_tool("pg_restore"),
            "--exit-on-error",
            "--single-transaction",
            "--no-owner",
            f"--dbname={_libpq_url(url)}",
            str(archive),
        ]
    )
    restored, events, _ = asyncio.run(_facts(url))
    return RestoreReport(str(archive), restored, events, needs_migration=relation == "older")
