"""What an event is at each point of its way: decoded, validated, anonymized, or rejected.

`Candidate` (a source decoded it) → `CloudEvent` (validation passed) → `AnonymizedEvent`
(the policy applied; what the repository stores), or, for a rejected one, its
`QuarantineRecord`. `Writable` is what a batch holds.

The per-event types are plain slotted dataclasses, not frozen ones: a frozen dataclass
pays an `object.__setattr__` per field on construction, which shows at tens of
thousands of events per second. One step changes an event after construction: the
contract stage sets `contract_version` and, in lenient mode, repairs `data_json` and
records `violations_json` on the `AnonymizedEvent` it judged.

`CloudEvent` still carries the raw `subject`; `AnonymizedEvent` cannot, by construction,
so only anonymized values can reach the repository. `QuarantineRecord` is a rejected
event reduced to what may be stored of it: attribute values that passed the edge's
checks, never `data`, never a raw subject.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from enum import StrEnum
from typing import Any

import orjson

from app.errors import ErrorCode
from app.model.outcomes import Rejection, violations_json

ExtensionValue = str | int | bool


class Transport(StrEnum):
    """How an event reached Sluice; a bounded label for metrics and quarantine rows."""

    HTTP = "http"
    PUBSUB = "pubsub"
    AMQP = "amqp"
    FILE = "file"  # archived events loaded by the Beam backfill (beam/)


@dataclass(slots=True)
class CloudEvent:
    specversion: str
    id: str
    source: str
    type: str
    time: datetime | None
    subject: str | None
    datacontenttype: str | None
    dataschema: str | None
    data: Any  # parsed JSON; a string for text and base64 payloads; None when absent
    data_is_base64: bool
    extensions: dict[str, ExtensionValue]
    size: int  # bytes, for limits and buffer accounting
    transport: Transport
    # `data` as validation serialized it to measure it: reused when the policy leaves
    # `data` untouched, so clean data is serialized once, not twice.
    data_serialized: bytes | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.source, self.id)


@dataclass(slots=True)
class AnonymizedEvent:
    specversion: str
    id: str
    source: str
    type: str
    time: datetime | None
    subject_pseudonym: str | None
    pseudonym_key_id: str | None
    datacontenttype: str | None
    dataschema: str | None
    data_json: str | None
    data_is_base64: bool
    extensions_json: str
    size: int
    transport: Transport
    policy_version: str  # which anonymization rules produced this row
    # The subject's pseudonyms under every key, comma-joined: what the suppression list
    # is checked against, so erasures made before a key rotation still hold after it.
    subject_lookup: str | None = None
    contract_version: str | None = None  # `type@version` that checked `data`; None: no contract
    violations_json: str | None = None  # lenient mode: what was dropped and why (no values)

    @property
    def key(self) -> tuple[str, str]:
        return (self.source, self.id)


# What replay needs besides `data` (kept in its own column) to rebuild an anonymized event.
_NOT_IN_ENVELOPE = frozenset(
    {"data_json", "transport", "contract_version", "violations_json", "extensions_json"}
)


def envelope_json(event: AnonymizedEvent) -> str:
    envelope = {
        f.name: getattr(event, f.name) for f in fields(event) if f.name not in _NOT_IN_ENVELOPE
    }
    envelope["extensions"] = orjson.loads(event.extensions_json)
    return orjson.dumps(envelope).decode()


def event_from_envelope(
    envelope: dict[str, Any], *, data_json: str | None, transport: Transport
) -> AnonymizedEvent:
    """The inverse of `envelope_json`, for replay."""
    attributes = {k: v for k, v in envelope.items() if k != "extensions"}
    return anonymized_event_from(
        attributes
        | {
            "data_json": data_json,
            "extensions_json": orjson.dumps(envelope.get("extensions") or {}).decode(),
            "transport": transport,
        }
    )


def anonymized_event_from(document: dict[str, Any]) -> AnonymizedEvent:
    """An `AnonymizedEvent` from its fields as JSON gave them back (`time` as RFC 3339
    text, `transport` as its name): for replay and for forwarded broker messages."""
    time = document.get("time")
    return AnonymizedEvent(
        **document
        | {
            "time": datetime.fromisoformat(time) if time is not None else None,
            "transport": Transport(document["transport"]),
        }
    )


@dataclass(frozen=True, slots=True)
class QuarantineRecord:
    transport: Transport
    code: ErrorCode
    field: str | None
    message: str
    source: str | None
    event_id: str | None
    type: str | None
    subject_pseudonym: str | None
    attributes_json: str  # safe attribute values and extension *names*, as JSON
    data_json: str | None = None  # `data` after the policy; None when it could not apply
    policy_version: str | None = None
    size: int = 256
    contract_version: str | None = None  # the contract that rejected it, if one did
    violations_json: str | None = None  # every failed check: code, field path, keyword
    # The anonymized envelope (everything but `data`) of an event that passed envelope
    # validation and failed a contract or quality check: what replay rebuilds it from.
    event_json: str | None = None
    # True when the sender is told `quarantined` (held for replay) rather than `rejected`.
    held: bool = False

    @classmethod
    def of(
        cls,
        rejection: Rejection,
        *,
        transport: Transport,
        source: str | None = None,
        event_id: str | None = None,
        type: str | None = None,
        subject_pseudonym: str | None = None,
        attributes_json: str = "{}",
        data_json: str | None = None,
        policy_version: str | None = None,
        event_json: str | None = None,
    ) -> QuarantineRecord:
        """The row of a rejected event: the rejection's facts plus what may be kept of the
        event (see the class docstring), the one place a record is put together."""
        return cls(
            transport=transport,
            code=rejection.code,
            field=rejection.field,
            message=rejection.message,
            source=source,
            event_id=event_id,
            type=type,
            subject_pseudonym=subject_pseudonym,
            attributes_json=attributes_json,
            data_json=data_json,
            policy_version=policy_version,
            contract_version=rejection.contract_version,
            violations_json=violations_json(rejection.violations) if rejection.violations else None,
            event_json=event_json,
            held=rejection.held,
        )


Writable = AnonymizedEvent | QuarantineRecord


@dataclass(frozen=True, slots=True)
class BinaryData:
    """`data` of a binary-mode event, already typed by its content type."""

    value: Any  # parsed JSON, text, or base64 text; None when the body was empty
    is_base64: bool
    size: int


@dataclass(slots=True)
class Candidate:
    """One event as a source decoded it, before validation.

    `raw` is what the wire held for this event: a JSON object's members in structured
    mode (or anything else, which validation rejects), the attributes in binary mode,
    where `binary_data` then carries the body.
    """

    raw: Any
    transport: Transport
    binary_data: BinaryData | None = None
    # False when the source proved the wire bytes hold no NUL, sparing a walk of `raw`.
    may_hold_nul: bool = True
    # Set by a source that could not decode this one message (its other messages still
    # go through): validation answers with it, and the message is quarantined.
    rejection: Rejection | None = None
