"""Builders shared by the privacy tests: keyrings, policies from YAML text, events."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.model.events import CloudEvent, Transport
from app.privacy.engine import PolicyAnonymizer
from app.privacy.keyring import Keyring
from app.privacy.policy import parse_policy
from app.privacy.rules import Policy

KEY = b"privacy-test-key"


def keyring(key: bytes = KEY, key_id: str = "k1") -> Keyring:
    return Keyring(active_id=key_id, keys={key_id: key})


def policy_from(text: str, name: str = "policy.yaml") -> Policy:
    return parse_policy(text.encode(), Path(name))


def anonymizer_from(text: str, ring: Keyring | None = None) -> PolicyAnonymizer:
    return PolicyAnonymizer(policy_from(text), ring or keyring())


def cloud_event(**overrides: Any) -> CloudEvent:
    fields: dict[str, Any] = {
        "specversion": "1.0",
        "id": "evt-1",
        "source": "/tests",
        "type": "com.example.test",
        "time": datetime(2026, 11, 25, 12, 0, tzinfo=UTC),
        "subject": None,
        "datacontenttype": "application/json",
        "dataschema": None,
        "data": None,
        "data_is_base64": False,
        "extensions": {},
        "size": 100,
        "transport": Transport.HTTP,
    }
    fields.update(overrides)
    return CloudEvent(**fields)


def tagged(value: str) -> str:
    """The `<kid>:<hex>` pseudonym the default test keyring gives `value`."""
    return keyring().tagged_pseudonym(value)
