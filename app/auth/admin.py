"""`python -m app keys create|list|revoke|rotate`: API keys managed in PostgreSQL.

A new key is printed once, on its own line (stdout), followed by nothing that repeats it;
only its SHA-256 is stored. Every change is written to `admin_audit` as `cli:<user>`.
`create --file-entry` stores nothing and prints the YAML entry for `SLUICE_AUTH_KEYS_FILE`
instead (the key on the first line, the entry after it), for keys kept outside the
database. Rotation issues a new key of the same name, scopes and sources and lets the old
ones expire after `--grace` (default one day), so producers can switch without a gap.
"""

from __future__ import annotations

import getpass
from datetime import datetime, timedelta
from typing import Any

import yaml

from app.auth.keys import generate, parse_scopes
from app.clock import utc_now
from app.storage.keys import KeyRecord, KeyRepository


def actor() -> str:
    return f"cli:{getpass.getuser()}"


def new_record(
    name: str, scopes: list[str], sources: list[str] | None, expires_at: datetime | None
) -> tuple[str, KeyRecord]:
    """A fresh key and the record to store for it; raises ValueError for a bad scope."""
    parsed = sorted(parse_scopes(scopes))
    made = generate()
    record = KeyRecord(
        key_id=made.key_id,
        name=name,
        secret_sha256=made.secret_sha256,
        scopes=tuple(scope.value for scope in parsed),
        sources=None if sources is None else tuple(sources),
        created_at=utc_now(),
        expires_at=expires_at,
    )
    return made.key, record


def file_entry(record: KeyRecord) -> str:
    entry: dict[str, Any] = {
        "name": record.name,
        "key_id": record.key_id,
        "secret_sha256": record.secret_sha256,
        "scopes": list(record.scopes),
    }
    if record.sources is not None:
        entry["sources"] = list(record.sources)
    if record.expires_at is not None:
        entry["expires_at"] = record.expires_at.isoformat()
    return yaml.safe_dump({"keys": [entry]}, sort_keys=False)


def listing(records: list[KeyRecord]) -> list[dict[str, Any]]:
    """What `keys list` shows: everything but the hash."""
    now = utc_now()
    return [
        {
            "key_id": r.key_id,
            "name": r.name,
            "scopes": list(r.scopes),
            "sources": None if r.sources is None else list(r.sources),
            "created_at": r.created_at,
            "expires_at": r.expires_at,
            "revoked_at": r.revoked_at,
            "last_used_at": r.last_used_at,
            "live": r.revoked_at is None and (r.expires_at is None or r.expires_at > now),
        }
        for r in records
    ]


async def rotate(repository: KeyRepository, name: str, grace: timedelta) -> tuple[str, KeyRecord]:
    """A new key like the newest live one of `name`; the others expire after `grace`.
    Raises LookupError when `name` has no live key."""
    now = utc_now()
    live = [
        r
        for r in await repository.all()
        if r.name == name and r.revoked_at is None and (r.expires_at is None or r.expires_at > now)
    ]
    if not live:
        raise LookupError(f"no live key named {name!r}")
    model = max(live, key=lambda r: r.created_at)
    key, record = new_record(
        name, list(model.scopes), None if model.sources is None else list(model.sources), None
    )
    await repository.insert(record, actor=actor())
    await repository.expire(name, at=now + grace, now=now, actor=actor(), keep=record.key_id)
    return key, record
