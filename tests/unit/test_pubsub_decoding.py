"""Pub/Sub push deliveries → candidates: envelope shapes and the three mapping rules."""

from __future__ import annotations

import base64

import orjson
import pytest

from app.config import LimitSettings, PubSubSettings
from app.errors import ErrorCode, RequestRejected
from app.model.events import CloudEvent, Transport
from app.sources.pubsub import decode_unwrapped, decode_wrapped, to_candidate
from app.sources.validate import validate_candidate

SETTINGS = PubSubSettings()
LIMITS = LimitSettings()
SUBSCRIPTION = "projects/p/subscriptions/orders"


def envelope(data: bytes, attributes: dict[str, str] | None = None, **message: object) -> bytes:
    body = {
        "message": {
            "data": base64.b64encode(data).decode(),
            "attributes": attributes or {},
            "messageId": "17",
            "publishTime": "2026-11-25T10:00:00.123Z",
            **message,
        },
        "subscription": SUBSCRIPTION,
    }
    return orjson.dumps(body)


def event_of(body: bytes, settings: PubSubSettings = SETTINGS) -> CloudEvent:
    result = validate_candidate(to_candidate(decode_wrapped(body), settings), LIMITS)
    assert isinstance(result, CloudEvent), result
    return result


def test_plain_json_is_wrapped_with_message_metadata() -> None:
    event = event_of(envelope(b'{"total": 3}', {"type": "com.example.order"}))
    assert (event.id, event.type, event.source) == (
        "17@2026-11-25T10:00:00.123Z",  # scoped by publish time (issue 11)
        "com.example.order",
        f"//pubsub.googleapis.com/{SUBSCRIPTION}",
    )
    assert event.data == {"total": 3}
    assert event.time is not None
    assert event.time.isoformat() == "2026-11-25T10:00:00.123000+00:00"
    assert event.transport is Transport.PUBSUB


def test_wrapping_uses_the_configured_source_type_attribute_and_default() -> None:
    settings = PubSubSettings(source="/billing", type_attribute="kind", default_type="x.default")
    with_kind = event_of(envelope(b"hello", {"kind": "x.kind"}), settings)
    without = event_of(envelope(b"hello"), settings)
    assert (with_kind.source, with_kind.type, with_kind.data) == ("/billing", "x.kind", "hello")
    assert without.type == "x.default"


def test_snake_case_twins_are_accepted() -> None:
    body = orjson.dumps(
        {
            "message": {
                "data": base64.b64encode(b"1").decode(),
                "message_id": "9",
                "publish_time": "2026-11-25T10:00:00Z",
            },
            "subscription": SUBSCRIPTION,
        }
    )
    assert event_of(body).id == "9@2026-11-25T10:00:00Z"


def test_ce_attributes_give_binary_mode() -> None:
    attributes = {
        "ce-specversion": "1.0",
        "ce-id": "evt-1",
        "ce-source": "/shop",
        "ce-type": "com.example.paid",
        "ce-subject": "order-1",
        "content-type": "application/json",
    }
    event = event_of(envelope(b'{"paid": true}', attributes))
    assert (event.id, event.source, event.type, event.subject) == (
        "evt-1",
        "/shop",
        "com.example.paid",
        "order-1",
    )
    assert event.data == {"paid": True}
    assert event.datacontenttype == "application/json"


def test_a_structured_cloudevent_in_data_is_used_as_is() -> None:
    inner = {"specversion": "1.0", "id": "s-1", "source": "/s", "type": "t", "data": [1]}
    event = event_of(envelope(orjson.dumps(inner)))
    assert (event.id, event.source, event.data) == ("s-1", "/s", [1])


def test_an_undecodable_message_becomes_a_rejection_to_quarantine() -> None:
    attributes = {
        "ce-specversion": "1.0",
        "ce-id": "bad-1",
        "ce-source": "/shop",
        "ce-type": "t",
        "content-type": "application/json",
    }
    candidate = to_candidate(decode_wrapped(envelope(b"{not json", attributes)), SETTINGS)
    result = validate_candidate(candidate, LIMITS)
    assert not isinstance(result, CloudEvent)
    assert result.code is ErrorCode.MALFORMED_JSON
    assert candidate.raw["id"] == "bad-1"  # quarantined under its own attributes


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"subscription": "x"}',
        orjson.dumps({"message": {"data": "aGk="}}),
        orjson.dumps({"message": {"messageId": "1", "data": "%%%"}}),
        orjson.dumps({"message": {"messageId": "1", "attributes": {"a": 1}}}),
    ],
)
def test_a_body_that_is_no_push_delivery_is_refused(body: bytes) -> None:
    with pytest.raises(RequestRejected) as refused:
        decode_wrapped(body)
    assert refused.value.code.http_status == 400


def test_unwrapped_delivery_reads_metadata_and_attributes_from_headers() -> None:
    headers = {
        "x-goog-pubsub-message-id": "42",
        "x-goog-pubsub-publish-time": "2026-11-25T10:00:00Z",
        "x-goog-pubsub-subscription-name": SUBSCRIPTION,
        "type": "com.example.unwrapped",
        "content-type": "application/json",
        "user-agent": "APIs-Google",
    }
    message = decode_unwrapped(headers, b'{"n": 1}')
    assert message.attributes == {
        "type": "com.example.unwrapped",
        "content-type": "application/json",
    }
    event = validate_candidate(to_candidate(message, SETTINGS), LIMITS)
    assert isinstance(event, CloudEvent)
    assert (event.id, event.type, event.data) == (
        "42@2026-11-25T10:00:00Z",
        "com.example.unwrapped",
        {"n": 1},
    )


def test_unwrapped_delivery_without_a_message_id_is_refused() -> None:
    with pytest.raises(RequestRejected):
        decode_unwrapped({"content-type": "application/json"}, b"{}")


def test_a_reused_message_id_with_a_later_publish_time_is_another_event() -> None:
    """The emulator restarts ids at 1; a re-created topic may too: not duplicates."""
    first = event_of(envelope(b"{}", publishTime="2026-11-25T10:00:00.123Z"))
    again = event_of(envelope(b"{}", publishTime="2026-11-25T10:00:00.123Z"))
    reused = event_of(envelope(b"{}", publishTime="2026-11-26T08:00:00.001Z"))
    assert first.key == again.key  # a redelivery: the same idempotency key
    assert reused.key != first.key
