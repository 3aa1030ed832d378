"""API keys: their format, their hash, their scopes, the sources they may write.

A key is `slk_<key id>_<secret>`: the key id (12 hex digits, public, shown by `keys list`)
finds the stored record, the secret is 256 random bits. Only the SHA-256 of the whole key
is stored. A slow password hash (bcrypt, Argon2) defends low-entropy secrets against
guessing once the hashes leak; a 256-bit random secret cannot be guessed either way, and a
fast hash keeps a request's check in microseconds. HMAC with a server-side pepper would
add nothing a leak of the table alone could be used for, and would make file-held keys
depend on one more secret. The hash is compared in constant time.

Source patterns are shell-style (`fnmatch`, case-sensitive): `*` matches any run of
characters, `/` included, so `/shop/*` covers `/shop/orders` and `/shop/eu/orders`;
a pattern without wildcards matches that one source.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from fnmatch import translate

PREFIX = "slk"
_KEY_ID_BYTES = 6
_SECRET_BYTES = 32  # 256 bits
_KEY = re.compile(r"^slk_(?P<key_id>[0-9a-f]{12})_(?P<secret>[A-Za-z0-9_-]{43})$")


class Scope(StrEnum):
    INGEST = "ingest"  # POST /ingest
    ADMIN_READ = "admin:read"  # quarantine listing, quality, subject access
    ADMIN_WRITE = "admin:write"  # replay, erasure, unsuppress
    METRICS = "metrics"  # GET /metrics, when SLUICE_AUTH_METRICS=key


def sha256_hex(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class NewKey:
    """A key just made: `key` is shown once and never stored."""

    key_id: str
    key: str
    secret_sha256: str


def generate() -> NewKey:
    key_id = secrets.token_hex(_KEY_ID_BYTES)
    key = f"{PREFIX}_{key_id}_{secrets.token_urlsafe(_SECRET_BYTES)}"
    return NewKey(key_id=key_id, key=key, secret_sha256=sha256_hex(key))


def key_id_of(presented: str) -> str | None:
    """The key id of a well-formed key, or None (then it is no key of ours)."""
    match = _KEY.match(presented)
    return match["key_id"] if match else None


class SourcePatterns:
    """The CloudEvents sources one key may write, compiled once."""

    __slots__ = ("_regex", "patterns")

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(patterns)
        joined = "|".join(f"(?:{translate(pattern)})" for pattern in self.patterns)
        self._regex = re.compile(joined) if self.patterns else None

    def allows(self, source: object) -> bool:
        return (
            isinstance(source, str)
            and self._regex is not None
            and self._regex.fullmatch(source) is not None
        )


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key as the process checks it; `sources` None means any source."""

    key_id: str
    name: str
    secret_sha256: str
    scopes: frozenset[Scope]
    sources: SourcePatterns | None
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    origin: str = "database"  # or "file", or "admin-token"

    def matches(self, presented: str) -> bool:
        return hmac.compare_digest(sha256_hex(presented), self.secret_sha256)

    def live(self, now: datetime) -> bool:
        if self.revoked_at is not None and self.revoked_at <= now:
            return False
        return self.expires_at is None or now < self.expires_at


def parse_scopes(values: Iterable[str]) -> frozenset[Scope]:
    """Scopes by name; raises ValueError naming an unknown one."""
    return frozenset(Scope(value) for value in values)
