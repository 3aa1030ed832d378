"""Reading the quarantine: filtered, paginated listing, and what replay needs.

Writing quarantine rows is the batch statement's job (`repository.WRITE_BATCH`); this
module only reads them and marks the ones a replay stored. Every statement is static:
an absent filter is a NULL parameter, never a string spliced into SQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from app.storage.repository import mapped_errors

# `$1..$6`: code, type, source, since, until, include replayed rows; `$7` keyset cursor.
_MATCHING = """
    ($1::text IS NULL OR error_code = $1)
    AND ($2::text IS NULL OR type = $2)
    AND ($3::text IS NULL OR source = $3)
    AND ($4::timestamptz IS NULL OR last_seen_at >= $4)
    AND ($5::timestamptz IS NULL OR last_seen_at < $5)
    AND ($6 OR replayed_at IS NULL)
"""
_LIST = f"""
SELECT quarantine_id, received_at, last_seen_at, occurrences, transport, error_code,
       error_field, error_message, source, event_id, type, contract_version, policy_version,
       violations::text AS violations, attributes::text AS attributes, data::text AS data,
       event IS NOT NULL AS replayable, replayed_at
FROM quarantine
WHERE {_MATCHING} AND ($7::bigint IS NULL OR quarantine_id < $7)
ORDER BY quarantine_id DESC
LIMIT $8
"""  # noqa: S608 - a constant, no input in it # nosec B608
_REPLAYABLE = f"""
SELECT quarantine_id, received_at, transport, event::text AS event, data::text AS data
FROM quarantine
WHERE {_MATCHING} AND quarantine_id > $7
ORDER BY quarantine_id
LIMIT $8
"""  # noqa: S608 - a constant, no input in it # nosec B608


@dataclass(frozen=True, slots=True)
class QuarantineFilter:
    code: str | None = None
    type: str | None = None
    source: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    include_replayed: bool = False

    def parameters(self) -> tuple[Any, ...]:
        return (self.code, self.type, self.source, self.since, self.until, self.include_replayed)


@dataclass(frozen=True, slots=True)
class ReplayRow:
    quarantine_id: int
    received_at: datetime
    transport: str
    event: dict[str, Any] | None  # None: refused before it was a valid event
    data_json: str | None


class QuarantineRepository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def listing(
        self, where: QuarantineFilter, *, before_id: int | None, limit: int
    ) -> list[dict[str, Any]]:
        """Newest first; pass the last row's `quarantine_id` as `before_id` for the next page."""
        with mapped_errors("list quarantine"):
            rows = await self._pool.fetch(_LIST, *where.parameters(), before_id, limit)
        return [_listed(row) for row in rows]

    async def replayable(
        self, where: QuarantineFilter, *, after_id: int, limit: int
    ) -> list[ReplayRow]:
        """Matching rows in id order, after `after_id`: replay walks them in chunks."""
        with mapped_errors("read quarantine"):
            rows = await self._pool.fetch(_REPLAYABLE, *where.parameters(), after_id, limit)
        return [
            ReplayRow(
                quarantine_id=row["quarantine_id"],
                received_at=row["received_at"],
                transport=row["transport"],
                event=orjson.loads(row["event"]) if row["event"] is not None else None,
                data_json=row["data"],
            )
            for row in rows
        ]

    async def mark_replayed(self, ids: Sequence[int], at: datetime) -> None:
        with mapped_errors("mark quarantine replayed"):
            await self._pool.execute(
                "UPDATE quarantine SET replayed_at = $2 WHERE quarantine_id = ANY($1::bigint[])",
                list(ids),
                at,
            )

    async def waiting(self) -> int:
        """Rows not yet replayed: the quarantine's size as an operator sees it."""
        with mapped_errors("count quarantine"):
            count: int = await self._pool.fetchval(
                "SELECT count(*) FROM quarantine WHERE replayed_at IS NULL"
            )
        return count


def _listed(row: asyncpg.Record) -> dict[str, Any]:
    listed = dict(row)
    for name in ("violations", "attributes", "data"):
        text = listed[name]
        listed[name] = orjson.loads(text) if text is not None else None
    return listed
