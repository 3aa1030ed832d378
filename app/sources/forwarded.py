"""Already-anonymized writables as broker messages (broker-backed HTTP mode), both ways.

`POST /ingest` with `SLUICE_HTTP_ACK=broker` validates and anonymizes, then publishes
each `AnonymizedEvent` and `QuarantineRecord` as one message: RabbitMQ writes messages to
disk, and raw personal data must never reach a disk. The consumer recognises these
messages by their content type and writes them as they are, without anonymizing twice.

Anyone who can publish to the queue could claim "already anonymized" and smuggle raw data
past the policy, so each message is signed: HMAC-SHA256 under the pseudonymization key
(which the web and consumer processes share) of a NUL-prefixed body. A subject can never
hold a NUL, so no stored subject pseudonym can double as a signature. A message that
claims to be forwarded but fails the check is refused (`envelope.bad_forward_signature`).
"""

from __future__ import annotations

import dataclasses
import hmac
from typing import Any

import orjson

from app.errors import ErrorCode, EventRejection
from app.pipeline.events import QuarantineRecord, Transport, Writable, anonymized_event_from
from app.privacy.keyring import Keyring

CONTENT_TYPE = "application/vnd.sluice.writable+json"
SIGNATURE_HEADER = "sluice-signature"
POLICY_HEADER = "sluice-policy-version"
_DOMAIN = "\x00sluice-forwarded\x00"


def encode(writable: Writable) -> bytes:
    fields = {field.name: getattr(writable, field.name) for field in dataclasses.fields(writable)}
    kind = "quarantine" if isinstance(writable, QuarantineRecord) else "event"
    return orjson.dumps({"kind": kind, **fields})


def sign(body: bytes, keyring: Keyring) -> str:
    return keyring.tagged_pseudonym(_DOMAIN + body.decode())


def decode(body: bytes, signature: object, keyring: Keyring) -> Writable | EventRejection:
    """The writable a forwarded message carries, or why it cannot be trusted."""
    if not isinstance(signature, str) or not _verified(body, signature, keyring):
        return EventRejection(
            code=ErrorCode.BAD_FORWARD_SIGNATURE,
            field=SIGNATURE_HEADER,
            message="a forwarded (already anonymized) message must carry a valid signature",
        )
    try:
        return _writable(orjson.loads(body))
    except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError):
        # Signed by us yet unreadable: a version of Sluice that wrote another shape.
        return EventRejection(
            code=ErrorCode.NOT_AN_EVENT,
            field="body",
            message="a forwarded message this version cannot read",
        )


def _verified(body: bytes, signature: str, keyring: Keyring) -> bool:
    key_id, _, digest = signature.partition(":")
    try:
        expected = keyring.all_pseudonyms(_DOMAIN + body.decode()).get(key_id)
    except UnicodeDecodeError:
        return False
    return expected is not None and hmac.compare_digest(expected, digest)


def _writable(document: dict[str, Any]) -> Writable:
    kind = document.pop("kind")
    if kind == "quarantine":
        document["transport"] = Transport(document["transport"])
        document["code"] = ErrorCode(document["code"])
        return QuarantineRecord(**document)
    if kind != "event":
        raise ValueError(kind)
    return anonymized_event_from(document)
