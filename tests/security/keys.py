"""API keys made for tests: stored through the real repository, returned in full."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from app.auth import admin as key_admin
from app.clock import utc_now
from app.storage.keys import KeyRepository


async def make_key(
    database_url: str,
    name: str,
    scopes: Sequence[str],
    *,
    sources: Sequence[str] | None = None,
    expires_at: datetime | None = None,
    revoked: bool = False,
) -> str:
    """A key stored in the database; the key itself, as `keys create` would print it."""
    key, record = key_admin.new_record(
        name, list(scopes), None if sources is None else list(sources), expires_at
    )
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    try:
        repository = KeyRepository(pool)
        await repository.insert(record, actor="test")
        if revoked:
            await repository.revoke(record.key_id, at=utc_now(), actor="test")
    finally:
        await pool.close()
    return key
