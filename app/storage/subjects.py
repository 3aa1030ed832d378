"""SQL for the data subject's rights: erasure, suppression, access. All of it here.

Every method takes the subject's pseudonyms under every key (the keyring derives them);
the raw identifier never reaches this module, let alone a table.
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson
from asyncpg.pool import PoolConnectionProxy

from app.storage.repository import mapped_errors

_DELETE_EVENTS = """
WITH gone AS (
    DELETE FROM events WHERE subject_pseudonym = ANY($1::text[]) RETURNING subject_pseudonym
)
SELECT subject_pseudonym, count(*) AS n FROM gone GROUP BY subject_pseudonym
"""
_DELETE_QUARANTINE = """
WITH gone AS (
    DELETE FROM quarantine WHERE subject_pseudonym = ANY($1::text[]) RETURNING subject_pseudonym
)
SELECT subject_pseudonym, count(*) AS n FROM gone GROUP BY subject_pseudonym
"""
_SUPPRESS = """
INSERT INTO suppressed_subjects (subject_pseudonym, key_id, suppressed_at)
SELECT p, k, $3 FROM unnest($1::text[], $2::text[]) AS s(p, k)
ON CONFLICT DO NOTHING
"""
_AUDIT = """
INSERT INTO subject_audit (requested_at, action, requester, subject_pseudonym, key_id,
                           events_deleted, quarantine_deleted)
SELECT $1, $2, $3, * FROM unnest($4::text[], $5::text[], $6::bigint[], $7::bigint[])
"""
_EVENTS_PAGE = """
SELECT source, id, type, specversion, time, subject_pseudonym, pseudonym_key_id,
       datacontenttype, dataschema, data::text AS data, data_is_base64,
       extensions::text AS extensions, received_at, policy_version
FROM events
WHERE subject_pseudonym = ANY($1::text[])
  AND (received_at, source, id) > ($2::timestamptz, $3::text, $4::text)
ORDER BY received_at, source, id
LIMIT $5
"""
_EPOCH = "0001-01-01T00:00:00+00:00"


@dataclass(frozen=True, slots=True)
class SubjectPseudonyms:
    """One subject, as the keyring sees it: its pseudonym under every key."""

    by_key: Mapping[str, str]  # key id → pseudonym
    active_key_id: str

    @property
    def active(self) -> str:
        return self.by_key[self.active_key_id]


@dataclass(frozen=True, slots=True)
class ErasureCount:
    subject_pseudonym: str  # under the active key: how the audit and the answer name it
    events_deleted: int
    quarantine_deleted: int


@dataclass(frozen=True, slots=True)
class EventsPage:
    events: list[dict[str, Any]]
    next_cursor: str | None


class SubjectRepository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def erase(
        self, subjects: Sequence[SubjectPseudonyms], *, requester: str, now: datetime
    ) -> list[ErasureCount]:
        """Delete every row of `subjects` in every partition and in the quarantine, add
        them to the suppression list and write one audit row each: one transaction."""
        owner = {p: i for i, s in enumerate(subjects) for p in s.by_key.values()}
        every = list(owner)
        with mapped_errors("erase"):
            async with self._pool.acquire() as connection, connection.transaction():
                events = await connection.fetch(_DELETE_EVENTS, every)
                quarantine = await connection.fetch(_DELETE_QUARANTINE, every)
                keys = [kid for s in subjects for kid in s.by_key]
                pseudonyms = [p for s in subjects for p in s.by_key.values()]
                await connection.execute(_SUPPRESS, pseudonyms, keys, now)
                events_of, quarantine_of = (
                    _by_subject(owner, events),
                    _by_subject(owner, quarantine),
                )
                counts = [
                    ErasureCount(s.active, events_of[i], quarantine_of[i])
                    for i, s in enumerate(subjects)
                ]
                await self._audit(
                    connection,
                    "erase",
                    requester=requester,
                    now=now,
                    subjects=subjects,
                    counts=counts,
                )
        return counts

    async def unsuppress(
        self, subjects: Sequence[SubjectPseudonyms], *, requester: str, now: datetime
    ) -> int:
        """Let later events of `subjects` be stored again; returns the entries removed."""
        every = [p for s in subjects for p in s.by_key.values()]
        with mapped_errors("unsuppress"):
            async with self._pool.acquire() as connection, connection.transaction():
                status = await connection.execute(
                    "DELETE FROM suppressed_subjects WHERE subject_pseudonym = ANY($1::text[])",
                    every,
                )
                counts = [ErasureCount(s.active, 0, 0) for s in subjects]
                await self._audit(
                    connection,
                    "unsuppress",
                    requester=requester,
                    now=now,
                    subjects=subjects,
                    counts=counts,
                )
        return int(status.rsplit(" ", 1)[-1])

    async def is_suppressed(self, subject: SubjectPseudonyms) -> bool:
        with mapped_errors("is_suppressed"):
            found = await self._pool.fetchval(
                "SELECT EXISTS (SELECT 1 FROM suppressed_subjects "
                "WHERE subject_pseudonym = ANY($1::text[]))",
                list(subject.by_key.values()),
            )
        return bool(found)

    async def events_page(
        self, subject: SubjectPseudonyms, *, cursor: str | None, limit: int
    ) -> EventsPage:
        """What is stored for one subject (the right of access), oldest first, keyset-paged."""
        after = _decode_cursor(cursor)
        with mapped_errors("events_page"):
            rows = await self._pool.fetch(
                _EVENTS_PAGE,
                list(subject.by_key.values()),
                datetime.fromisoformat(after[0]),
                after[1],
                after[2],
                limit + 1,
            )
        events = [_event_of(row) for row in rows[:limit]]
        more = len(rows) > limit
        last = rows[limit - 1] if more else None
        next_cursor = (
            _encode_cursor(last["received_at"].isoformat(), last["source"], last["id"])
            if last is not None
            else None
        )
        return EventsPage(events, next_cursor)

    @staticmethod
    async def _audit(
        connection: PoolConnectionProxy[asyncpg.Record],
        action: str,
        *,
        requester: str,
        now: datetime,
        subjects: Sequence[SubjectPseudonyms],
        counts: Sequence[ErasureCount],
    ) -> None:
        await connection.execute(
            _AUDIT,
            now,
            action,
            requester,
            [c.subject_pseudonym for c in counts],
            [s.active_key_id for s in subjects],
            [c.events_deleted for c in counts],
            [c.quarantine_deleted for c in counts],
        )


def _by_subject(owner: Mapping[str, int], rows: Sequence[asyncpg.Record]) -> Counter[int]:
    """Deleted-row counts per pseudonym, added up per subject (its index in the request)."""
    counts: Counter[int] = Counter()
    for row in rows:
        counts[owner[row["subject_pseudonym"]]] += int(row["n"])
    return counts


def _event_of(row: asyncpg.Record) -> dict[str, Any]:
    event = dict(row)
    event["data"] = orjson.loads(event["data"]) if event["data"] is not None else None
    event["extensions"] = orjson.loads(event["extensions"])
    for name in ("time", "received_at"):
        if event[name] is not None:
            event[name] = event[name].isoformat()
    return event


def _encode_cursor(received_at: str, source: str, event_id: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([received_at, source, event_id])).decode()


def _decode_cursor(cursor: str | None) -> tuple[str, str, str]:
    """Raises ValueError for a cursor this service did not issue."""
    if cursor is None:
        return (_EPOCH, "", "")
    decoded = orjson.loads(base64.urlsafe_b64decode(cursor.encode()))
    if not (
        isinstance(decoded, list) and len(decoded) == 3 and all(isinstance(x, str) for x in decoded)
    ):
        raise ValueError("malformed cursor")
    datetime.fromisoformat(decoded[0])
    return (decoded[0], decoded[1], decoded[2])
