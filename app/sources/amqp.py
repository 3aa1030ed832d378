"""RabbitMQ deliveries → `Candidate`s: `AmqpDecoder`, the source's `Decoder`.

Messages that Sluice's own HTTP edge already validated and anonymized (broker-backed HTTP
mode) are not CloudEvents on the wire: the consumer sends them to
`app.pipeline.forwarding` instead (`forwarding.is_forwarded`). Any other message becomes
an event by the first rule that applies (CloudEvents AMQP binding 1.0):

1. content type `application/cloudevents-batch+json`: batched mode, as HTTP's (a Sluice
   extension: the AMQP binding defines no batch). The body is a JSON array of structured
   events, each validated and answered on its own; the consumer acks the delivery once
   all of them committed: stored, duplicate, or rejected into the quarantine (the others
   are still stored). A body that is not such an array as a whole (not JSON, not an
   array, past `max_body_bytes` or `max_events_per_request`) is one rejected candidate,
   like a malformed single message: quarantined under the message's id, then acked;
2. application properties prefixed `cloudEvents:` (or `cloudEvents_`, the JMS-safe
   spelling): binary mode; the properties are the attributes, the body is `data`, typed by
   the message's `content-type`;
3. content type `application/cloudevents+json`, or a JSON object with `specversion`:
   structured mode, the body is the event;
4. anything else is wrapped (raw data): `id` = the AMQP `message_id`, `source` = the
   configured source or `/amqp/<queue>`, `type` = the message's `type` property or the
   configured default, `time` = its `timestamp`. A redelivery keeps its `message_id`,
   hence its idempotency key: it is answered `duplicate`, never stored twice.

Never raises: a message that cannot be decoded becomes a candidate carrying its
rejection, so it is quarantined and acknowledged rather than redelivered forever.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.config import AmqpSettings, LimitSettings
from app.errors import ErrorCode, RequestRejected
from app.model.events import Candidate, Transport
from app.sources.cloudevents import (
    BATCH,
    STRUCTURED,
    batch,
    binary_data,
    is_json_media_type,
    iso,
    json_data,
    json_or_none,
    media_type,
    parse_json,
    rejected_candidate,
    structured,
)

_PREFIXES = ("cloudEvents:", "cloudEvents_")


@dataclass(frozen=True, slots=True)
class AmqpMessage:
    """What decoding reads of a delivery: plain values, so it is tested without a broker."""

    body: bytes
    content_type: str | None = None
    message_id: str | None = None
    type: str | None = None
    timestamp: datetime | None = None
    headers: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class AmqpDecoder:
    settings: AmqpSettings
    limits: LimitSettings

    def decode(self, message: AmqpMessage) -> list[Candidate]:
        headers = message.headers or {}
        media = media_type(message.content_type)
        try:
            if media == BATCH:
                return self._batch(message)
            return [self._candidate(message, headers, media)]
        except RequestRejected as rejected:
            return self.rejected(message, rejected)

    def rejected(self, message: AmqpMessage, error: RequestRejected) -> list[Candidate]:
        """`message` as a rejected candidate, under the attributes it carried."""
        attributes = _ce_attributes(message.headers or {}) or {"id": message.message_id}
        return [rejected_candidate(error, attributes, Transport.AMQP)]

    def _batch(self, message: AmqpMessage) -> list[Candidate]:
        # Checked before parsing, under HTTP's code for a body past the same limit.
        self._check_size(message, ErrorCode.BODY_TOO_LARGE)
        return batch(message.body, self.limits, Transport.AMQP)

    def _check_size(self, message: AmqpMessage, code: ErrorCode) -> None:
        if len(message.body) > self.limits.max_body_bytes:
            raise RequestRejected(
                f"the message body exceeds {self.limits.max_body_bytes} bytes",
                code=code,
                field="body",
            )

    def _candidate(self, message: AmqpMessage, headers: Mapping[str, Any], media: str) -> Candidate:
        self._check_size(message, ErrorCode.EVENT_TOO_LARGE)
        attributes = _ce_attributes(headers)
        if attributes:
            if message.content_type:
                attributes["datacontenttype"] = message.content_type
            data = binary_data(media, message.body, self.limits)
            return Candidate(raw=attributes, transport=Transport.AMQP, binary_data=data)
        if media == STRUCTURED:
            return structured(parse_json(message.body, self.limits), message.body, Transport.AMQP)
        # A declared JSON type must parse; an undeclared one is JSON if it happens to parse.
        document = parse_json(message.body, self.limits) if is_json_media_type(media) else None
        if not media:
            document = json_or_none(message.body)
        if isinstance(document, dict) and "specversion" in document:
            return structured(document, message.body, Transport.AMQP)
        return self._wrapped(message, media, document)

    def _wrapped(self, message: AmqpMessage, media: str, document: Any) -> Candidate:
        if not message.message_id:
            raise RequestRejected(
                "a message that is not a CloudEvent needs a message_id to become its id",
                code=ErrorCode.MISSING_ATTRIBUTE,
                field="message_id",
            )
        attributes: dict[str, Any] = {
            "specversion": "1.0",
            "id": message.message_id,
            "source": self.settings.source or f"/amqp/{self.settings.queue}",
            "type": message.type or self.settings.default_type,
        }
        if message.timestamp is not None:
            attributes["time"] = iso(message.timestamp)
        if document is not None:
            attributes["datacontenttype"] = "application/json"
            data = json_data(document, message.body)
        else:
            attributes["datacontenttype"] = message.content_type or "text/plain"
            data = binary_data(media or "text/plain", message.body)
        return Candidate(raw=attributes, transport=Transport.AMQP, binary_data=data)


def _ce_attributes(headers: Mapping[str, Any]) -> dict[str, Any]:
    return {
        name[len(prefix) :]: _attribute_value(value)
        for name, value in headers.items()
        for prefix in _PREFIXES
        if name.startswith(prefix)
    }


def _attribute_value(value: Any) -> Any:
    """AMQP field values as CloudEvents attribute values (validation checks the types)."""
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode(errors="replace")
    if isinstance(value, datetime):
        return iso(value)
    return value
