"""RabbitMQ messages → candidates: the AMQP binding's modes, raw data, forwarded writables."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from app.config import AmqpSettings, LimitSettings, PrivacySettings
from app.consumer import DeliveryDecoder
from app.errors import ErrorCode
from app.model.events import (
    AnonymizedEvent,
    Candidate,
    CloudEvent,
    QuarantineRecord,
    Transport,
    Writable,
)
from app.model.outcomes import Rejection
from app.pipeline import forwarding as forwarded
from app.pipeline.forwarding import ForwardedDecoder
from app.privacy.keyring import Keyring
from app.sources.amqp import AmqpDecoder, AmqpMessage
from app.sources.validate import validate_candidate
from tests.support import anonymized_event

LIMITS = LimitSettings()
KEYRING = Keyring.from_settings(PrivacySettings())
DECODER = AmqpDecoder(AmqpSettings(queue="orders"), LIMITS)
FORWARDED = ForwardedDecoder(KEYRING)
EVENT = {"specversion": "1.0", "id": "e1", "source": "/shop", "type": "order.created"}


def decoded(message: AmqpMessage, decoder: AmqpDecoder = DECODER) -> Candidate | Writable:
    """What the consumer makes of a message: a candidate, or a forwarded writable."""
    candidates, writables = DeliveryDecoder(decoder, FORWARDED).decode(message)
    [item] = [*candidates, *writables]
    return item


def checked(message: AmqpMessage, decoder: AmqpDecoder = DECODER) -> CloudEvent | Rejection:
    candidate = decoded(message, decoder)
    assert isinstance(candidate, Candidate)
    assert candidate.transport is Transport.AMQP
    return validate_candidate(candidate, LIMITS)


def event_of(message: AmqpMessage, decoder: AmqpDecoder = DECODER) -> CloudEvent:
    result = checked(message, decoder)
    assert isinstance(result, CloudEvent), result
    return result


def rejection_of(message: AmqpMessage) -> Rejection:
    result = checked(message)
    assert isinstance(result, Rejection), result
    return result


def test_structured_mode_is_the_body() -> None:
    body = orjson.dumps({**EVENT, "data": {"n": 1}})
    event = event_of(AmqpMessage(body, content_type="application/cloudevents+json"))
    assert (event.id, event.source, event.type, event.data) == (
        "e1",
        "/shop",
        "order.created",
        {"n": 1},
    )


def test_a_json_body_holding_a_cloudevent_is_structured_without_the_content_type() -> None:
    assert event_of(AmqpMessage(orjson.dumps(EVENT), message_id="ignored")).id == "e1"


@pytest.mark.parametrize("prefix", ["cloudEvents:", "cloudEvents_"])
def test_binary_mode_reads_prefixed_application_properties(prefix: str) -> None:
    headers = {f"{prefix}{name}": value for name, value in EVENT.items()}
    headers[f"{prefix}subject"] = b"user-7"  # AMQP byte strings become text
    headers[f"{prefix}time"] = datetime(2026, 11, 25, 12, 0)  # AMQP timestamps: UTC
    headers[f"{prefix}priority"] = 3
    message = AmqpMessage(b'{"n": 2}', content_type="application/json", headers=headers)
    event = event_of(message)
    assert (event.id, event.subject, event.data) == ("e1", "user-7", {"n": 2})
    assert event.time == datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    assert event.datacontenttype == "application/json"
    assert event.extensions == {"priority": 3}


def test_raw_json_is_wrapped_with_the_message_id() -> None:
    sent = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
    message = AmqpMessage(
        b'{"raw": true}', message_id="m-1", type="com.example.raw", timestamp=sent
    )
    event = event_of(message)
    assert (event.id, event.source, event.type) == ("m-1", "/amqp/orders", "com.example.raw")
    assert (event.time, event.data) == (sent, {"raw": True})


def test_raw_text_is_wrapped_with_the_configured_source_and_default_type() -> None:
    decoder = AmqpDecoder(AmqpSettings(source="//billing"), LIMITS)
    event = event_of(AmqpMessage(b"plain words", message_id="m-2"), decoder)
    assert (event.source, event.type, event.data) == (
        "//billing",
        "com.rabbitmq.message",
        "plain words",
    )


def test_raw_binary_is_kept_as_base64() -> None:
    message = AmqpMessage(b"\x00\xff", content_type="application/octet-stream", message_id="m-3")
    event = event_of(message)
    assert event.data_is_base64


@pytest.mark.parametrize(
    ("message", "code"),
    [
        (
            AmqpMessage(b"{oops", content_type="application/cloudevents+json"),
            ErrorCode.MALFORMED_JSON,
        ),
        (
            AmqpMessage(b"[1, 2]", content_type="application/cloudevents+json"),
            ErrorCode.INVALID_ATTRIBUTE,  # validation: a body that is no object
        ),
        (
            AmqpMessage(b"{oops", content_type="application/json", message_id="m"),
            ErrorCode.MALFORMED_JSON,
        ),
        (AmqpMessage(b"no id at all"), ErrorCode.MISSING_ATTRIBUTE),
        (
            AmqpMessage(b"x" * (LIMITS.max_body_bytes + 1), message_id="m"),
            ErrorCode.EVENT_TOO_LARGE,
        ),
        (
            AmqpMessage(b'{"a": "\\u0000"}', content_type="application/json", message_id="m"),
            ErrorCode.NUL_CHARACTER,
        ),
        (AmqpMessage(orjson.dumps({**EVENT, "id": ""})), ErrorCode.INVALID_ATTRIBUTE),
        (
            AmqpMessage(
                orjson.dumps({**EVENT, "data": {"k": "a\x00b"}}),
                content_type="application/cloudevents+json",
            ),
            ErrorCode.NUL_CHARACTER,
        ),
        (
            AmqpMessage(
                b"{}",
                headers={
                    **{f"cloudEvents:{k}": v for k, v in EVENT.items()},
                    "cloudEvents:id": "a\x00",
                },
            ),
            ErrorCode.NUL_CHARACTER,
        ),
    ],
)
def test_undecodable_messages_become_rejections_never_exceptions(
    message: AmqpMessage, code: ErrorCode
) -> None:
    assert rejection_of(message).code is code


def test_a_rejected_binary_message_keeps_its_attributes_for_the_quarantine() -> None:
    headers = {f"cloudEvents:{name}": value for name, value in EVENT.items()}
    message = AmqpMessage(b"{oops", content_type="application/json", headers=headers)
    candidate = decoded(message)
    assert isinstance(candidate, Candidate)
    assert candidate.raw["id"] == "e1"
    assert candidate.rejection is not None


BATCH = "application/cloudevents-batch+json"


def batch_of(message: AmqpMessage) -> list[CloudEvent | Rejection]:
    candidates, writables = DeliveryDecoder(DECODER, FORWARDED).decode(message)
    assert not writables
    return [validate_candidate(candidate, LIMITS) for candidate in candidates]


def test_a_batch_message_is_its_events_each_answered_on_its_own() -> None:
    events = [{**EVENT, "id": f"e{n}"} for n in range(3)]
    events[1] = {**events[1], "type": ""}  # this one alone is refused
    results = batch_of(AmqpMessage(orjson.dumps(events), content_type=BATCH, message_id="m"))
    assert [type(result) for result in results] == [CloudEvent, Rejection, CloudEvent]
    assert [r.id for r in results if isinstance(r, CloudEvent)] == ["e0", "e2"]


def test_a_batch_content_type_wins_over_binary_mode_properties() -> None:
    headers = {f"cloudEvents:{name}": value for name, value in EVENT.items()}
    body = orjson.dumps([{**EVENT, "id": "x1"}, {**EVENT, "id": "x2"}])
    results = batch_of(AmqpMessage(body, content_type=f"{BATCH}; charset=utf-8", headers=headers))
    assert [r.id for r in results if isinstance(r, CloudEvent)] == ["x1", "x2"]


def test_an_empty_batch_message_holds_no_events() -> None:
    assert batch_of(AmqpMessage(b"[]", content_type=BATCH, message_id="m")) == []


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"[{oops", ErrorCode.MALFORMED_JSON),
        (orjson.dumps(EVENT), ErrorCode.NOT_AN_EVENT),  # an object, not an array
        (orjson.dumps([EVENT] * (LIMITS.max_events_per_request + 1)), ErrorCode.TOO_MANY_EVENTS),
        (b"[" + b" " * LIMITS.max_body_bytes + b"]", ErrorCode.BODY_TOO_LARGE),
        (orjson.dumps([{f"k{n}": n for n in range(1001)}]), ErrorCode.JSON_TOO_COMPLEX),
    ],
)
def test_a_malformed_batch_message_is_one_rejection_under_its_message_id(
    body: bytes, code: ErrorCode
) -> None:
    [result] = batch_of(AmqpMessage(body, content_type=BATCH, message_id="batch-7"))
    assert isinstance(result, Rejection)
    assert result.code is code
    [candidate] = DECODER.decode(AmqpMessage(body, content_type=BATCH, message_id="batch-7"))
    assert candidate.raw == {"id": "batch-7"}  # what the quarantine row is found by


def forwarded_message(writable: Writable, keyring: Keyring = KEYRING) -> AmqpMessage:
    body = forwarded.encode(writable)
    return AmqpMessage(
        body,
        content_type=forwarded.CONTENT_TYPE,
        headers={forwarded.SIGNATURE_HEADER: forwarded.sign(body, keyring)},
    )


def test_forwarded_events_come_back_as_they_were_written() -> None:
    event = anonymized_event("/shop", "e9")
    event.time = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    writable = decoded(forwarded_message(event))
    assert isinstance(writable, AnonymizedEvent)
    assert writable == event


def test_forwarded_quarantine_records_come_back_as_they_were_written() -> None:
    record = QuarantineRecord(
        transport=Transport.HTTP,
        code=ErrorCode.MISSING_ATTRIBUTE,
        field="type",
        message="missing",
        source="/shop",
        event_id="bad",
        type=None,
        subject_pseudonym=None,
        attributes_json="{}",
    )
    assert decoded(forwarded_message(record)) == record


def test_a_forwarded_message_signed_by_a_retired_key_still_verifies() -> None:
    old = Keyring.from_settings(PrivacySettings(pseudonym_key="old", pseudonym_key_id="k0"))
    rotated = Keyring.from_settings(
        PrivacySettings(pseudonym_key="new", pseudonym_key_id="k1", previous_keys={"k0": "old"})
    )
    decoder = ForwardedDecoder(rotated)
    event = anonymized_event("/shop", "e10")
    assert decoder.decode(forwarded_message(event, old)) == [event]


@pytest.mark.parametrize(
    "tamper",
    [
        lambda m: AmqpMessage(m.body.replace(b"e11", b"e12"), m.content_type, headers=m.headers),
        lambda m: AmqpMessage(m.body, m.content_type, headers={}),
        lambda m: AmqpMessage(
            m.body, m.content_type, headers={forwarded.SIGNATURE_HEADER: "k1:" + "0" * 64}
        ),
        lambda m: AmqpMessage(
            m.body,
            m.content_type,
            headers={
                forwarded.SIGNATURE_HEADER: forwarded.sign(
                    m.body, Keyring.from_settings(PrivacySettings(pseudonym_key="other"))
                )
            },
        ),
    ],
)
def test_a_forged_forwarded_message_is_refused(tamper: object) -> None:
    message = tamper(forwarded_message(anonymized_event("/shop", "e11")))  # type: ignore[operator]
    assert rejection_of(message).code is ErrorCode.BAD_FORWARD_SIGNATURE


def test_a_signed_but_unreadable_forwarded_message_is_refused() -> None:
    body = b'{"kind": "something-new"}'
    message = AmqpMessage(
        body,
        content_type=forwarded.CONTENT_TYPE,
        headers={forwarded.SIGNATURE_HEADER: forwarded.sign(body, KEYRING)},
    )
    assert rejection_of(message).code is ErrorCode.NOT_AN_EVENT
