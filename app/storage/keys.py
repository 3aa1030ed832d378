"""All SQL of API keys and of the admin audit.

The key table is small (one row per producer and operator), so every process reads it
whole every few seconds (`auth.store.KeyStore`) rather than once per request: an unknown
key then costs no database round trip, whoever sprays them. Last-used times are written
in one statement per interval, not per request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from app.storage.repository import mapped_errors


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """One API key as stored: never the key itself, only its SHA-256."""

    key_id: str
    name: str
    secret_sha256: str
    scopes: tuple[str, ...]
    sources: tuple[str, ...] | None
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None


_COLUMNS = (
    "key_id, name, secret_sha256, scopes, sources, created_at, expires_at, revoked_at, last_used_at"
)


def _record(row: asyncpg.Record) -> KeyRecord:
    sources = row["sources"]
    return KeyRecord(
        key_id=row["key_id"],
        name=row["name"],
        secret_sha256=row["secret_sha256"],
        scopes=tuple(row["scopes"]),
        sources=None if sources is None else tuple(sources),
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
        last_used_at=row["last_used_at"],
    )


class KeyRepository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def all(self) -> list[KeyRecord]:
        with mapped_errors("load api keys"):
            rows = await self._pool.fetch(
                f"SELECT {_COLUMNS} FROM api_keys ORDER BY name, created_at"  # noqa: S608 - fixed columns # nosec B608
            )
        return [_record(row) for row in rows]

    async def insert(self, key: KeyRecord, *, actor: str) -> None:
        with mapped_errors("create api key"):
            async with self._pool.acquire() as connection, connection.transaction():
                await connection.execute(
                    "INSERT INTO api_keys (key_id, name, secret_sha256, scopes, sources, "
                    "created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    key.key_id,
                    key.name,
                    key.secret_sha256,
                    list(key.scopes),
                    None if key.sources is None else list(key.sources),
                    key.created_at,
                    key.expires_at,
                )
                await _audit(connection, key.created_at, actor, "key.create", key.name)

    async def revoke(self, name_or_id: str, *, at: datetime, actor: str) -> list[str]:
        """Revoke every live key with this name or id; the ids revoked."""
        return await self._change(
            "UPDATE api_keys SET revoked_at = $2 "
            "WHERE (name = $1 OR key_id = $1) AND revoked_at IS NULL RETURNING key_id",
            (name_or_id, at),
            audit=("key.revoke", name_or_id, actor, at),
        )

    async def expire(
        self, name: str, *, at: datetime, now: datetime, actor: str, keep: str
    ) -> list[str]:
        """Rotation: every live key of `name` but `keep` expires at `at` (the grace end)."""
        return await self._change(
            "UPDATE api_keys SET expires_at = LEAST(COALESCE(expires_at, $2), $2) "
            "WHERE name = $1 AND key_id <> $3 AND revoked_at IS NULL RETURNING key_id",
            (name, at, keep),
            audit=("key.rotate", name, actor, now),
        )

    async def _change(
        self,
        statement: str,
        arguments: tuple[object, ...],
        *,
        audit: tuple[str, str, str, datetime],
    ) -> list[str]:
        """One audited update of keys, in one transaction; the key ids it changed."""
        action, target, actor, at = audit
        with mapped_errors(action):
            async with self._pool.acquire() as connection, connection.transaction():
                rows = await connection.fetch(statement, *arguments)
                if rows:
                    await _audit(connection, at, actor, action, target)
        return [row["key_id"] for row in rows]

    async def touch(self, last_used: Mapping[str, datetime]) -> None:
        """Record when each key was last used: one statement for the whole interval."""
        if not last_used:
            return
        with mapped_errors("touch api keys"):
            await self._pool.execute(
                "UPDATE api_keys AS k SET last_used_at = u.at "
                "FROM unnest($1::text[], $2::timestamptz[]) AS u(key_id, at) "
                "WHERE k.key_id = u.key_id "
                "AND (k.last_used_at IS NULL OR k.last_used_at < u.at)",
                list(last_used),
                list(last_used.values()),
            )


class AuditRepository:
    """The admin audit: who (a key's name) did what admin action, on what, when."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def record(self, *, at: datetime, actor: str, action: str, target: str | None) -> None:
        with mapped_errors("admin audit"):
            async with self._pool.acquire() as connection:
                await _audit(connection, at, actor, action, target)

    async def recent(self, limit: int = 100) -> list[dict[str, object]]:
        with mapped_errors("read admin audit"):
            rows = await self._pool.fetch(
                "SELECT at, actor, action, target FROM admin_audit ORDER BY audit_id DESC LIMIT $1",
                limit,
            )
        return [dict(row) for row in rows]


async def _audit(
    connection: PoolConnectionProxy[asyncpg.Record],
    at: datetime,
    actor: str,
    action: str,
    target: str | None,
) -> None:
    await connection.execute(
        "INSERT INTO admin_audit (at, actor, action, target) VALUES ($1, $2, $3, $4)",
        at,
        actor,
        action,
        target,
    )
