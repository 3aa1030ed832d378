"""The process's cache of API keys: who a presented key is, without a database round trip.

Keys come from three places, merged on every reload:

1. the database (`python -m app keys create`), reloaded every `SLUICE_AUTH_CACHE_TTL_S`;
2. the keys file (`SLUICE_AUTH_KEYS_FILE`, a mounted secret), read at start and on every
   reload; an entry whose key id is also in the database wins over the database row, so
   the deployment's secret store has the last word; its keys are revoked by removing
   them from the file;
3. `SLUICE_ADMIN_TOKEN`, the bootstrap credential of earlier versions: a bearer token that
   is not an `slk_` key is compared with it, and it holds both admin scopes (and
   `metrics`) but not `ingest`.

A revocation or expiry therefore takes effect within `SLUICE_AUTH_CACHE_TTL_S` (10 s by
default) in every process; expiry times are checked on every request. If a reload fails
(the database is away) the keys loaded last stay in force and the failure is logged.

Last-used times are kept in memory and written in one statement every
`SLUICE_AUTH_LAST_USED_FLUSH_S` (60 s), so they are at most that stale, and a burst of
requests costs no writes.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import yaml
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from app.auth.keys import ApiKey, Scope, SourcePatterns, key_id_of, parse_scopes, sha256_hex
from app.clock import WallClock, utc_now
from app.config import AuthSettings
from app.errors import ConfigurationError, SluiceError
from app.storage.keys import KeyRecord, KeyRepository

log = logging.getLogger(__name__)

ADMIN_TOKEN_NAME = "admin-token"  # noqa: S105 - a name, not a secret # nosec B105
_ADMIN_TOKEN_SCOPES = frozenset({Scope.ADMIN_READ, Scope.ADMIN_WRITE, Scope.METRICS})
# Compared against when a key id is unknown, so an unknown key costs what a wrong one does.
_NO_SUCH_KEY = ApiKey("", "", sha256_hex("no such key"), frozenset(), None)


class KeyFileEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=200)
    key_id: str = Field(pattern=r"^[0-9a-f]{12}$")
    secret_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    scopes: list[Scope] = Field(min_length=1)
    sources: list[str] | None = None
    expires_at: AwareDatetime | None = None


class KeyFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    keys: list[KeyFileEntry] = Field(default_factory=list)


def load_key_file(path: Path) -> list[ApiKey]:
    """The file's keys; raises `ConfigurationError` naming the file and what is wrong."""
    try:
        document = yaml.safe_load(path.read_text()) or {}
        parsed = KeyFile.model_validate(document)
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise ConfigurationError(f"{path}: not a usable keys file: {exc}") from None
    return [
        ApiKey(
            key_id=entry.key_id,
            name=entry.name,
            secret_sha256=entry.secret_sha256,
            scopes=frozenset(entry.scopes),
            sources=None if entry.sources is None else SourcePatterns(entry.sources),
            expires_at=entry.expires_at,
            origin="file",
        )
        for entry in parsed.keys
    ]


def from_record(record: KeyRecord) -> ApiKey:
    return ApiKey(
        key_id=record.key_id,
        name=record.name,
        secret_sha256=record.secret_sha256,
        scopes=parse_scopes(s for s in record.scopes if s in Scope._value2member_map_),
        sources=None if record.sources is None else SourcePatterns(record.sources),
        expires_at=record.expires_at,
        revoked_at=record.revoked_at,
    )


class KeyStore:
    def __init__(
        self,
        repository: KeyRepository | None,
        settings: AuthSettings,
        *,
        admin_token: str | None = None,
        wall_clock: WallClock = utc_now,
    ) -> None:
        self._repository = repository
        self._settings = settings
        self._admin_token = admin_token
        self._clock = wall_clock
        self._keys: dict[str, ApiKey] = {}
        self._last_used: dict[str, datetime] = {}
        self._file_keys = load_key_file(settings.keys_file) if settings.keys_file else []

    def __len__(self) -> int:
        return len(self._keys)

    async def reload(self) -> None:
        """Read the keys again; on failure keep the ones loaded last (and log it)."""
        stored: Sequence[KeyRecord] = ()
        if self._repository is not None:
            try:
                stored = await self._repository.all()
            except SluiceError as exc:
                log.warning("api keys not reloaded; the last ones stay", extra={"error": exc.code})
                return
        if self._settings.keys_file is not None:
            try:
                self._file_keys = load_key_file(self._settings.keys_file)
            except ConfigurationError as exc:
                log.error("keys file not reloaded; the last one stays: %s", exc)
        keys = {record.key_id: from_record(record) for record in stored}
        keys.update((key.key_id, key) for key in self._file_keys)  # the file wins
        self._keys = keys

    def authenticate(self, presented: str) -> ApiKey | None:
        """The live key `presented` is, or None: unknown, wrong, expired and revoked alike."""
        now = self._clock()
        key_id = key_id_of(presented)
        if key_id is None:
            return self._admin(presented)
        key = self._keys.get(key_id, _NO_SUCH_KEY)
        if not key.matches(presented) or key is _NO_SUCH_KEY or not key.live(now):
            return None
        self._last_used[key_id] = now
        return key

    def _admin(self, presented: str) -> ApiKey | None:
        expected = self._admin_token
        if expected is None or not hmac.compare_digest(presented.encode(), expected.encode()):
            return None
        return ApiKey(
            ADMIN_TOKEN_NAME, ADMIN_TOKEN_NAME, "", _ADMIN_TOKEN_SCOPES, None, origin="admin-token"
        )

    async def flush_last_used(self) -> None:
        used, self._last_used = self._last_used, {}
        if self._repository is None or not used:
            return
        database_keys = {
            k: v for k, v in used.items() if self._keys.get(k, _NO_SUCH_KEY).origin == "database"
        }
        try:
            await self._repository.touch(database_keys)
        except SluiceError as exc:
            log.warning("api keys' last use not recorded", extra={"error": exc.code})

    def _origin(self, key_id: str) -> str:
        return self._keys.get(key_id, _NO_SUCH_KEY).origin

    async def run(self) -> None:
        """Reload every TTL and write last-used times every flush interval, until cancelled."""
        ttl = self._settings.cache_ttl_s
        flush_every = max(1, round(self._settings.last_used_flush_s / ttl))
        rounds = 0
        try:
            while True:
                await asyncio.sleep(ttl)
                await self.reload()
                rounds += 1
                if rounds % flush_every == 0:
                    await self.flush_last_used()
        finally:
            await asyncio.shield(self.flush_last_used())
