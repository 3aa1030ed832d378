"""The shipped policy on events full of planted personal data: none of it may come out.

The same check runs with the policy as shipped (denylist) and with only its mode switched
to allowlist, the way a production deployment would tighten it.
"""

from __future__ import annotations

import base64
import dataclasses
from pathlib import Path
from typing import Any

import orjson
import pytest

from app.config import DEFAULT_POLICY_FILE
from app.model.events import AnonymizedEvent
from app.privacy.engine import PolicyAnonymizer
from app.privacy.policy import load_policy
from tests.unit.privacy.builders import cloud_event, keyring, tagged

SUBJECT = "zebulon.subject.planted@example.com"
FREE_TEXT = (
    "Please contact bob.planted@example.org or call +1 (555) 867-5309 / 555-867-5309 or "
    "+44 20 7946 0958; logged in from 198.51.100.23 and 2001:db8:85a3::8a2e:370:7334, paid "
    "with 4111111111111111, refund to GB82 WEST 1234 5698 7654 32 or DE89370400440532013000."
)
PLANTED = [
    SUBJECT,
    "alice.planted@example.com",
    "bob.planted@example.org",
    "carol.planted@example.io",
    "dave.planted@example.co.uk",
    "erin.planted@example.net",
    "+44 20 7946 0958",
    "+1 (555) 867-5309",
    "555-867-5309",
    "(555) 123-4567",
    "203.0.113.77",
    "198.51.100.23",
    "2001:db8:85a3::8a2e:370:7334",
    "4111 1111 1111 1111",
    "4111111111111111",
    "5500-0000-0000-0004",
    "GB82 WEST 1234 5698 7654 32",
    "GB82WEST12345698765432",
    "DE89370400440532013000",
    "Zebulon Plantedname",
    "Quintessa Plantedname",
    "Plantedname",
    "zeb_planted",
    "hunter2-planted-password",
    "tok_planted_5f1e2d",
    "sk_live_planted_key",
    "sess-planted-cookie",
    "1987-03-14",
    "1987-03",
    "078-05-1120",
    "P1234567",
    "221B Baker Street",
    "NW1 6XE",
    "51.523767",
    "-0.158555",
]


def _data() -> dict[str, Any]:
    return {
        "user": {
            "email": "alice.planted@example.com",
            "Name": "Zebulon Plantedname",
            "firstName": "Zebulon",
            "lastName": "Plantedname",
            "username": "zeb_planted",
            "phone": "+44 20 7946 0958",
            "mobile_phone": "(555) 123-4567",
            "birth_date": "1987-03-14",
            "password": "hunter2-planted-password",
            "ssn": "078-05-1120",
            "passport_number": "P1234567",
        },
        "customer": {"full_name": "Quintessa Plantedname", "ip": "203.0.113.77"},
        "items": [
            {"sku": "A-1", "card": "4111 1111 1111 1111"},
            {
                "sku": "B-2",
                "card_number": "5500-0000-0000-0004",
                "email": "dave.planted@example.co.uk",
            },
        ],
        "billing": {
            "iban": "GB82WEST12345698765432",
            "address": {"street": "221B Baker Street", "postcode": "NW1 6XE", "city": "London"},
        },
        "geo": {"lat": 51.523767, "lon": -0.158555},
        "note": FREE_TEXT,
        "comments": [FREE_TEXT, {"text": FREE_TEXT}],
        "access_token": "tok_planted_5f1e2d",
        "api_key": "sk_live_planted_key",
        "headers": {"Authorization": "Bearer tok_planted_5f1e2d", "Cookie": "sess-planted-cookie"},
        "contacts": ["erin.planted@example.net", "+1 (555) 867-5309"],
        "amount": 42,
    }


def _events() -> list[Any]:
    return [
        cloud_event(
            subject=SUBJECT,
            data=_data(),
            extensions={
                "email": "carol.planted@example.io",
                "useremail": "erin.planted@example.net",
                "clientip": "198.51.100.23",
                "note": FREE_TEXT,
                "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            },
        ),
        cloud_event(type="com.example.binary", subject=SUBJECT, data=FREE_TEXT),
        cloud_event(
            type="com.example.binary",
            data=base64.b64encode(FREE_TEXT.encode()).decode(),
            data_is_base64=True,
        ),
        cloud_event(type="com.example.list", data=[_data(), FREE_TEXT]),
    ]


def _anonymizer(tmp_path: Path, mode: str) -> PolicyAnonymizer:
    path = tmp_path / f"policy-{mode}.yaml"
    text = DEFAULT_POLICY_FILE.read_text()
    path.write_text(text.replace("mode: denylist", f"mode: {mode}", 1))
    policy = load_policy(path)
    assert policy.mode == mode
    return PolicyAnonymizer(policy, keyring())


def _stored_text(result: AnonymizedEvent) -> str:
    return "\n".join(str(getattr(result, field.name)) for field in dataclasses.fields(result))


@pytest.mark.parametrize("mode", ["denylist", "allowlist"])
def test_no_planted_value_survives_the_shipped_policy(tmp_path: Path, mode: str) -> None:
    anonymizer = _anonymizer(tmp_path, mode)
    outputs = [_stored_text(anonymizer.anonymize(event)) for event in _events()]
    outputs.append(anonymizer.quarantine_data("com.example.x", _data()) or "")
    outputs.append(anonymizer.quarantine_data(None, [FREE_TEXT]) or "")
    for value in PLANTED:
        for output in outputs:
            assert value not in output, f"{value!r} survived ({mode}): {output}"
            # JSON-escaped forms too: what a row's jsonb holds.
            assert orjson.dumps(value).decode()[1:-1] not in output


def test_the_shipped_policy_keeps_what_is_useful(tmp_path: Path) -> None:
    anonymizer = _anonymizer(tmp_path, "denylist")
    result = anonymizer.anonymize(_events()[0])
    data = orjson.loads(result.data_json or "null")
    assert data["amount"] == 42
    assert data["items"][0] == {"sku": "A-1", "card": "***************1111"}
    assert data["items"][1]["card_number"] == "***************0004"
    assert data["items"][1]["email"] == tagged("dave.planted@example.co.uk")
    assert data["user"]["email"] == tagged("alice.planted@example.com")
    assert data["user"]["birth_date"] == "1987-01-01"
    assert "password" not in data["user"]
    assert data["customer"]["ip"] == "203.0.113.0"
    assert data["geo"] == {"lat": 51.5, "lon": -0.2}
    assert data["billing"] == {"iban": tagged("GB82WEST12345698765432")}
    assert "access_token" not in data
    assert "api_key" not in data
    assert data["headers"] == {}
    assert data["note"].startswith("Please contact <EMAIL> or call <PHONE> / <PHONE> or <PHONE>;")
    assert data["note"].endswith("paid with <CARD>, refund to <IBAN> or <IBAN>.")
    extensions = orjson.loads(result.extensions_json)
    assert extensions["traceparent"] == "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert extensions["email"] == tagged("carol.planted@example.io")
    assert extensions["clientip"] == "198.51.100.0"
    assert result.subject_pseudonym == keyring().pseudonym(SUBJECT)


def test_allowlist_keeps_only_named_fields(tmp_path: Path) -> None:
    result = _anonymizer(tmp_path, "allowlist").anonymize(_events()[0])
    data = orjson.loads(result.data_json or "null")
    assert "amount" not in data
    assert "note" not in data
    assert data["user"]["email"] == tagged("alice.planted@example.com")
    assert orjson.loads(result.extensions_json).keys() == {
        "email",
        "useremail",
        "clientip",
        "traceparent",
    }
