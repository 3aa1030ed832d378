"""Google Cloud Pub/Sub push deliveries → `Candidate`s.

Two delivery shapes arrive at the push endpoint:

- wrapped (the default): a JSON envelope `{"message": {"data": base64, "attributes",
  "messageId", "publishTime", "orderingKey"?}, "subscription", "deliveryAttempt"?}`, with
  the snake_case twins `message_id` and `publish_time` accepted too;
- unwrapped (`no_wrapper` with `write_metadata`): the body is the raw data and the
  metadata arrives as headers (`x-goog-pubsub-message-id`, `-publish-time`,
  `-subscription-name`, and each attribute as a header of its own).

A message becomes a CloudEvent by the first rule that applies: attributes prefixed `ce-`
(the CloudEvents Pub/Sub binding: binary mode); data that is itself a structured
CloudEvent; otherwise the message is wrapped (`id` = messageId@publishTime, `source` = the
subscription or a configured source, `type` from a configured attribute or a default,
`time` = publishTime). A redelivery has the same messageId and publishTime, hence the
same idempotency key: it is answered `duplicate`, never stored twice.

`PubSubDecoder` is the source's `Decoder`: one push request in, its one candidate out.
An envelope that is not a Pub/Sub delivery at all raises `RequestRejected` (400: it did
not come from Pub/Sub, which never sends one). A delivery whose message cannot be
decoded becomes a Candidate carrying its rejection: it is quarantined and acknowledged,
since Pub/Sub would otherwise redeliver it forever.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.config import PubSubSettings
from app.errors import ErrorCode, RequestRejected
from app.model.events import Candidate, Transport
from app.sources.cloudevents import (
    binary_data,
    json_data,
    json_or_none,
    media_type,
    parse_json,
    rejected_candidate,
    structured,
)
from app.sources.http import HttpRequest

_METADATA_HEADER = "x-goog-pubsub-"
# Headers of an unwrapped delivery that are HTTP's or the push service's, not attributes.
_NOT_ATTRIBUTES = frozenset(
    {
        "host",
        "content-length",
        "user-agent",
        "accept",
        "accept-encoding",
        "authorization",
        "connection",
        "from",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-cloud-trace-context",
        "traceparent",
    }
)


_UNWRAPPED = f"{_METADATA_HEADER}message-id"


@dataclass(frozen=True, slots=True)
class PubSubDecoder:
    settings: PubSubSettings

    def decode(self, message: HttpRequest) -> list[Candidate]:
        """The push delivery's message as a candidate; raises `RequestRejected` only for
        a request that is not a push delivery at all."""
        if _UNWRAPPED in message.headers:
            delivered = decode_unwrapped(message.headers, message.body)
        else:
            delivered = decode_wrapped(message.body)
        return [to_candidate(delivered, self.settings)]


@dataclass(frozen=True, slots=True)
class PubSubMessage:
    data: bytes
    attributes: dict[str, str]
    message_id: str
    publish_time: str | None
    subscription: str


def decode_wrapped(body: bytes) -> PubSubMessage:
    """The message of a wrapped push delivery; raises `RequestRejected` (400/422)."""
    envelope = parse_json(body)
    message = envelope.get("message") if isinstance(envelope, dict) else None
    if not isinstance(message, dict):
        raise _not_a_delivery("the body must be a Pub/Sub push envelope with a 'message'")
    message_id = message.get("messageId", message.get("message_id"))
    if not isinstance(message_id, str) or not message_id:
        raise _not_a_delivery("the message has no messageId")
    attributes = message.get("attributes") or {}
    if not isinstance(attributes, dict) or not all(
        isinstance(value, str) for value in attributes.values()
    ):
        raise _not_a_delivery("message attributes must map strings to strings")
    try:
        data = base64.b64decode(message.get("data") or "", validate=True)
    except (binascii.Error, TypeError):
        raise _not_a_delivery("message data must be base64") from None
    publish_time = message.get("publishTime", message.get("publish_time"))
    subscription = envelope.get("subscription")
    return PubSubMessage(
        data=data,
        attributes=attributes,
        message_id=message_id,
        publish_time=publish_time if isinstance(publish_time, str) else None,
        subscription=subscription if isinstance(subscription, str) else "",
    )


def decode_unwrapped(headers: Mapping[str, str], body: bytes) -> PubSubMessage:
    """The message of an unwrapped (`no_wrapper` + `write_metadata`) push delivery."""
    message_id = headers.get(_UNWRAPPED)
    if not message_id:
        raise _not_a_delivery(
            f"an unwrapped delivery needs the {_METADATA_HEADER}message-id header"
        )
    attributes = {
        name: value
        for name, value in headers.items()
        if not name.startswith(_METADATA_HEADER) and name not in _NOT_ATTRIBUTES
    }
    return PubSubMessage(
        data=body,
        attributes=attributes,
        message_id=message_id,
        publish_time=headers.get(f"{_METADATA_HEADER}publish-time"),
        subscription=headers.get(f"{_METADATA_HEADER}subscription-name", ""),
    )


def to_candidate(message: PubSubMessage, settings: PubSubSettings) -> Candidate:
    """The message as a CloudEvent candidate; never raises (see the module docstring)."""
    try:
        if any(name.startswith("ce-") for name in message.attributes):
            return _binary(message)
        document = json_or_none(message.data)  # parsed once, for both rules below
        if isinstance(document, dict) and "specversion" in document:
            return structured(document, message.data, Transport.PUBSUB)
        return _wrapped(message, settings, document)
    except RequestRejected as rejected:
        attributes = _ce_attributes(message) or {"id": message.message_id}
        return rejected_candidate(rejected, attributes, Transport.PUBSUB)


def _ce_attributes(message: PubSubMessage) -> dict[str, Any]:
    return {
        name.removeprefix("ce-"): value
        for name, value in message.attributes.items()
        if name.startswith("ce-")
    }


def _binary(message: PubSubMessage) -> Candidate:
    attributes = _ce_attributes(message)
    content_type = message.attributes.get("content-type") or attributes.get("datacontenttype")
    if content_type:
        attributes["datacontenttype"] = content_type
    return Candidate(
        raw=attributes,
        transport=Transport.PUBSUB,
        binary_data=binary_data(media_type(content_type), message.data),
    )


def _wrapped(message: PubSubMessage, settings: PubSubSettings, document: Any) -> Candidate:
    attributes: dict[str, Any] = {
        "specversion": "1.0",
        "id": _event_id(message),
        "source": settings.source or _source_of(message.subscription),
        "type": message.attributes.get(settings.type_attribute) or settings.default_type,
    }
    if message.publish_time:
        attributes["time"] = message.publish_time
    if document is not None:
        attributes["datacontenttype"] = "application/json"
        data = json_data(document, message.data)
    else:
        data = binary_data("text/plain", message.data)
    return Candidate(raw=attributes, transport=Transport.PUBSUB, binary_data=data)


def _event_id(message: PubSubMessage) -> str:
    """`messageId@publishTime`: a redelivery repeats both, so it stays a duplicate; a new
    message that re-uses an id (a topic deleted and re-created, a subscription moved to
    another topic, the emulator after a restart) has a later publish time, so it is not
    mistaken for one and acknowledged unstored. Without a publish time: the messageId."""
    if message.publish_time:
        return f"{message.message_id}@{message.publish_time}"
    return message.message_id


def _source_of(subscription: str) -> str:
    return f"//pubsub.googleapis.com/{subscription}" if subscription else "//pubsub.googleapis.com"


def _not_a_delivery(message: str) -> RequestRejected:
    return RequestRejected(message, code=ErrorCode.NOT_A_PUBSUB_DELIVERY, field="body")
