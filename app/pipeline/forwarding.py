"""Already-anonymized writables as broker messages (broker-backed HTTP mode), both ways.

`POST /ingest` with `SLUICE_HTTP_ACK=broker` validates and anonymizes, then publishes
each `AnonymizedEvent` and `QuarantineRecord` as one message: RabbitMQ writes messages to
disk, and raw personal data must never reach a disk. The consumer recognises these
messages by their content type (`is_forwarded`) and `ForwardedDecoder` hands it the
writables to store as they are, without anonymizing twice.

Anyone who can publish to the queue could claim "already anonymized" and smuggle raw data
past the policy, so each message is signed: HMAC-SHA256 under the pseudonymization key
(which the web and consumer processes share) of a NUL-prefixed body. A subject can never
hold a NUL, so no stored subject pseudonym can double as a signature. A message that
claims to be forwarded but fails the check is refused (`envelope.bad_forward_signature`).
"""

from __future__ import annotations

import dataclasses
import hmac
from dataclasses import dataclass
from typing import Any

import orjson

from app.broker import Outgoing
from app.errors import ErrorCode, RequestRejected
from app.model.events import QuarantineRecord, Transport, Writable, anonymized_event_from
from app.observability import tracing
from app.privacy.keyring import Keyring
from app.sources.amqp import AmqpMessage
from app.sources.cloudevents import media_type

CONTENT_TYPE = "application/vnd.sluice.writable+json"
SIGNATURE_HEADER = "sluice-signature"
POLICY_HEADER = "sluice-policy-version"
_DOMAIN = "\x00sluice-forwarded\x00"


def encode(writable: Writable) -> bytes:
    fields = {field.name: getattr(writable, field.name) for field in dataclasses.fields(writable)}
    kind = "quarantine" if isinstance(writable, QuarantineRecord) else "event"
    return orjson.dumps({"kind": kind, **fields})


def outgoing(writable: Writable, keyring: Keyring) -> Outgoing:
    """The signed broker message that carries `writable` to the consumer."""
    body = encode(writable)
    headers = {SIGNATURE_HEADER: sign(body, keyring), POLICY_HEADER: writable.policy_version or ""}
    tracing.inject(headers)  # `traceparent`: the consumer's work joins the request's trace
    return Outgoing(body, content_type=CONTENT_TYPE, headers=headers)


def sign(body: bytes, keyring: Keyring) -> str:
    return keyring.tagged_pseudonym(_DOMAIN + body.decode())


def is_forwarded(message: AmqpMessage) -> bool:
    return media_type(message.content_type) == CONTENT_TYPE


@dataclass(frozen=True, slots=True)
class ForwardedDecoder:
    keyring: Keyring

    def decode(self, message: AmqpMessage) -> list[Writable]:
        """The writable a forwarded message carries; raises `RequestRejected` when it
        cannot be trusted or read (the consumer quarantines the message)."""
        signature = (message.headers or {}).get(SIGNATURE_HEADER)
        if not isinstance(signature, str) or not _verified(message.body, signature, self.keyring):
            raise RequestRejected(
                "a forwarded (already anonymized) message must carry a valid signature",
                code=ErrorCode.BAD_FORWARD_SIGNATURE,
                field=SIGNATURE_HEADER,
            )
        try:
            return [_writable(orjson.loads(message.body))]
        except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError):
            # Signed by us yet unreadable: a version of Sluice that wrote another shape.
            raise RequestRejected(
                "a forwarded message this version cannot read",
                code=ErrorCode.NOT_AN_EVENT,
                field="body",
            ) from None


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
