"""Reading stored rows for the residual-PII scan: the newest events and quarantine rows.

The scan (`app.privacy.residual`) looks for personal data that got through a policy; it
needs every stored JSON document of a sample of rows, and nothing else. Both statements
are static and bounded by `limit`: the newest rows received (events) or last seen
(quarantine) at or after `since`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from app.storage.repository import mapped_errors

_EVENTS = """
SELECT type, data::text AS data, extensions::text AS extensions
FROM events
WHERE received_at >= $1 AND NOT data_is_base64
ORDER BY received_at DESC
LIMIT $2
"""
_QUARANTINE = """
SELECT type, attributes::text AS attributes, data::text AS data, event::text AS event
FROM quarantine
WHERE last_seen_at >= $1
ORDER BY last_seen_at DESC
LIMIT $2
"""


@dataclass(frozen=True, slots=True)
class StoredRow:
    """One stored row's JSON documents, by the name the report gives them."""

    table: str  # events | quarantine
    type: str | None
    documents: dict[str, Any]  # e.g. {"data": …, "extensions": …}; absent when NULL


class ResidualRepository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def sample(self, since: datetime, limit: int) -> list[StoredRow]:
        """Up to `limit` newest events and up to `limit` newest quarantine rows since `since`."""
        with mapped_errors("sample stored rows"):
            events = await self._pool.fetch(_EVENTS, since, limit)
            quarantined = await self._pool.fetch(_QUARANTINE, since, limit)
        return [_row("events", row) for row in events] + [
            _row("quarantine", row) for row in quarantined
        ]


def _row(table: str, record: asyncpg.Record) -> StoredRow:
    documents = {
        name: orjson.loads(text)
        for name, text in record.items()
        if name != "type" and text is not None
    }
    return StoredRow(table, record["type"], documents)
