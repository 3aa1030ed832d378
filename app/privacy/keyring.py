"""The pseudonymization keys: one active key that writes, older keys that still verify.

Pseudonyms are HMAC-SHA256 under a secret key, never a plain or salted hash: without the
key nobody can test a guessed e-mail address against a stored value, yet equal inputs
still join. Each pseudonym is stored beside its key id, so a key can be rotated: new rows
use the new key, and erasure derives a subject's pseudonym under every key it holds.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from app.config import DEVELOPMENT_PSEUDONYM_KEY, PrivacySettings


@dataclass(frozen=True, slots=True)
class Keyring:
    active_id: str
    keys: Mapping[str, bytes]  # every key, the active one included

    def __post_init__(self) -> None:
        if self.active_id not in self.keys:
            raise ValueError(f"active key id {self.active_id!r} has no key")

    @classmethod
    def from_settings(cls, privacy: PrivacySettings) -> Keyring:
        active = privacy.pseudonym_key
        keys = {
            kid: secret.get_secret_value().encode() for kid, secret in privacy.previous_keys.items()
        }
        keys[privacy.pseudonym_key_id] = (
            active.get_secret_value() if active is not None else DEVELOPMENT_PSEUDONYM_KEY
        ).encode()
        return cls(active_id=privacy.pseudonym_key_id, keys=keys)

    def pseudonym(self, value: str) -> str:
        """Hex HMAC-SHA256 of `value` under the active key."""
        return _mac(self.keys[self.active_id], value)

    def tagged_pseudonym(self, value: str) -> str:
        """`<key id>:<hex>`: the form stored inside `data`, where no column holds the id."""
        return f"{self.active_id}:{self.pseudonym(value)}"

    def all_pseudonyms(self, value: str) -> dict[str, str]:
        """The pseudonym of `value` under every key, by key id (for erasure and lookup)."""
        return {kid: _mac(key, value) for kid, key in self.keys.items()}


def _mac(key: bytes, value: str) -> str:
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()
