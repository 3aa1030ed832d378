"""The anonymization stage's contract: a keyed HMAC for the subject, and an output type
with no room for the raw subject. Exercised on `PolicyAnonymizer`, the implementation;
the policy itself is tested in tests/unit/privacy/."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from app.model.events import AnonymizedEvent, CloudEvent, Transport
from app.pipeline.anonymize import Anonymizer
from app.privacy.engine import PolicyAnonymizer
from app.privacy.keyring import Keyring
from app.privacy.policy import parse_policy

KEY = b"test-key-0123456789"
SUBJECT = "secret@example.com"


def cloud_event(**overrides: Any) -> CloudEvent:
    fields: dict[str, Any] = {
        "specversion": "1.0",
        "id": "evt-1",
        "source": "/users",
        "type": "com.example.user.signed_up",
        "time": datetime(2024, 3, 5, 10, 0, tzinfo=UTC),
        "subject": SUBJECT,
        "datacontenttype": "application/json",
        "dataschema": "urn:schema:user",
        "data": {"plan": "pro"},
        "data_is_base64": False,
        "extensions": {"traceparent": "00-abc-01", "attempt": 2, "sampled": True},
        "size": 321,
        "transport": Transport.PUBSUB,
    }
    fields.update(overrides)
    return CloudEvent(**fields)


# Everything but the subject kept as sent: what is left to test is the subject.
KEEP_ALL = b"version: 1\nmode: denylist\nunnamed_text: keep\n"


def pseudonymizer(key: bytes = KEY, key_id: str = "k1") -> PolicyAnonymizer:
    policy = parse_policy(KEEP_ALL, Path("keep-all.yaml"))
    return PolicyAnonymizer(policy, Keyring(active_id=key_id, keys={key_id: key}))


def test_is_an_anonymizer() -> None:
    anonymizer: Anonymizer = pseudonymizer()
    assert anonymizer.subject_pseudonym("x") == pseudonymizer().subject_pseudonym("x")


@pytest.mark.parametrize("subject", [SUBJECT, "user-42", "caf\u00e9 \u2603", "x" * 2048])
def test_pseudonym_is_hmac_sha256_hex(subject: str) -> None:
    expected = hmac.new(KEY, subject.encode(), hashlib.sha256).hexdigest()
    assert pseudonymizer().subject_pseudonym(subject) == expected
    assert len(expected) == 64


def test_pseudonym_is_not_a_plain_hash() -> None:
    assert (
        pseudonymizer().subject_pseudonym(SUBJECT) != hashlib.sha256(SUBJECT.encode()).hexdigest()
    )


def test_pseudonym_is_stable_for_the_same_key() -> None:
    first = pseudonymizer().subject_pseudonym(SUBJECT)
    assert pseudonymizer().subject_pseudonym(SUBJECT) == first
    assert pseudonymizer(key=bytes(KEY), key_id="other").subject_pseudonym(SUBJECT) == first


def test_pseudonym_differs_across_keys_and_subjects() -> None:
    assert pseudonymizer().subject_pseudonym(SUBJECT) != pseudonymizer(
        b"another-key"
    ).subject_pseudonym(SUBJECT)
    assert pseudonymizer().subject_pseudonym(SUBJECT) != pseudonymizer().subject_pseudonym(
        SUBJECT.upper()
    )


def test_anonymize_replaces_the_subject() -> None:
    event = cloud_event()
    result = pseudonymizer(key_id="k7").anonymize(event)
    assert result.subject_pseudonym == hmac.new(KEY, SUBJECT.encode(), hashlib.sha256).hexdigest()
    assert result.pseudonym_key_id == "k7"


def test_anonymize_copies_everything_else() -> None:
    event = cloud_event()
    result = pseudonymizer().anonymize(event)
    assert result.specversion == event.specversion
    assert result.id == event.id
    assert result.source == event.source
    assert result.key == event.key
    assert result.type == event.type
    assert result.time == event.time
    assert result.datacontenttype == event.datacontenttype
    assert result.dataschema == event.dataschema
    assert result.data_json == '{"plan":"pro"}'
    assert result.data_is_base64 is event.data_is_base64
    assert result.size == event.size
    assert result.transport is Transport.PUBSUB
    assert orjson.loads(result.extensions_json) == event.extensions


def test_no_extensions_serialize_as_an_empty_object() -> None:
    assert pseudonymizer().anonymize(cloud_event(extensions={})).extensions_json == "{}"


def test_no_subject_gives_no_pseudonym_and_no_key_id() -> None:
    result = pseudonymizer().anonymize(cloud_event(subject=None))
    assert result.subject_pseudonym is None
    assert result.pseudonym_key_id is None


def test_anonymized_event_has_no_field_for_a_raw_subject() -> None:
    names = {field.name for field in dataclasses.fields(AnonymizedEvent)}
    assert "subject" not in names
    assert {"subject_pseudonym", "pseudonym_key_id"} <= names
    assert "subject" not in AnonymizedEvent.__slots__
    assert not hasattr(AnonymizedEvent, "subject")


def test_raw_subject_appears_nowhere_in_the_output() -> None:
    result = pseudonymizer().anonymize(cloud_event(subject=SUBJECT))
    assert SUBJECT not in repr(result)
    values = [getattr(result, field.name) for field in dataclasses.fields(result)]
    assert all(SUBJECT not in str(value) for value in values)
    assert not hasattr(result, "__dict__")  # slots: nothing can be tacked on
