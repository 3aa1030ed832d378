"""The pseudonymization keys: one active key that writes, older keys that still verify.

Pseudonyms are HMAC-SHA256 under a secret key, never a plain or salted hash: without the
key nobody can test a guessed e-mail address against a stored value, yet equal inputs
still join. Each pseudonym is stored beside its key id, so a key can be rotated: new rows
use the new key, and erasure derives a subject's pseudonym under every key it holds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from app.config import DEVELOPMENT_PSEUDONYM_KEY, PrivacySettings


@dataclass(frozen=True, slots=True)
class Keyring:
    active_id: str
    keys: Mapping[str, bytes]  # every key, the active one included
    _macs: dict[str, _HmacSha256] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.active_id not in self.keys:
            raise ValueError(f"active key id {self.active_id!r} has no key")
        object.__setattr__(self, "_macs", {kid: _HmacSha256(key) for kid, key in self.keys.items()})

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
        return self._macs[self.active_id].hexdigest(value)

    def tagged_pseudonym(self, value: str) -> str:
        """`<key id>:<hex>`: the form stored inside `data`, where no column holds the id."""
        return f"{self.active_id}:{self.pseudonym(value)}"

    def all_pseudonyms(self, value: str) -> dict[str, str]:
        """The pseudonym of `value` under every key, by key id (for erasure and lookup)."""
        return {kid: mac.hexdigest(value) for kid, mac in self._macs.items()}

    def lookup(self, value: str) -> str:
        """Every pseudonym of `value`, comma-joined, as the suppression check takes them."""
        if len(self._macs) == 1:
            return self.pseudonym(value)
        return ",".join(mac.hexdigest(value) for mac in self._macs.values())


class _HmacSha256:
    """HMAC-SHA256 (RFC 2104) with the key's inner and outer pads hashed once.

    Same output as `hmac.new(key, msg, sha256)`, about twice as fast per call, which
    matters at one or two pseudonyms per event.
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        padded = key.ljust(_BLOCK, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in padded))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in padded))

    def hexdigest(self, value: str) -> str:
        inner = self._inner.copy()
        inner.update(value.encode())
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()


_BLOCK = 64  # SHA-256 block size in bytes
