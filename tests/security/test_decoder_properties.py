"""Hostile input, property-based: every decoder, fed arbitrary bytes, headers and JSON
structures, returns candidates or raises `RequestRejected`, never anything else; and
whatever it returns, validation answers with an event or a rejection."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.config import AmqpSettings, LimitSettings, PubSubSettings
from app.errors import RequestRejected
from app.model.events import Candidate, CloudEvent
from app.model.outcomes import Rejection
from app.sources.amqp import AmqpDecoder, AmqpMessage
from app.sources.http import HttpDecoder, HttpRequest
from app.sources.pubsub import PubSubDecoder
from app.sources.validate import validate_candidate

LIMITS = LimitSettings(max_json_object_keys=16)
HTTP = HttpDecoder(LIMITS)
PUBSUB = PubSubDecoder(PubSubSettings())
AMQP = AmqpDecoder(AmqpSettings(queue="fuzz"), LIMITS)
EXAMPLES = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_text = st.text(max_size=40)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | _text
)
# JSON values deeper and wider than LIMITS allow, with CloudEvents attribute names likely.
_keys = st.sampled_from(["specversion", "id", "source", "type", "data", "subject", "time"]) | _text
json_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=20) | st.dictionaries(_keys, inner, max_size=20),
    max_leaves=60,
)
_media = st.sampled_from(
    [
        "application/cloudevents+json",
        "application/cloudevents-batch+json",
        "application/json",
        "application/json; charset=utf-8",
        "text/plain",
        "application/octet-stream",
        "",
    ]
)
_header_names = st.sampled_from(
    ["ce-specversion", "ce-id", "ce-source", "ce-type", "ce-time", "ce-subject", "ce-x"]
) | st.from_regex(r"\Ace-[a-z]{1,8}\Z")
headers = st.dictionaries(_header_names, _text, max_size=6)
bodies = st.binary(max_size=512) | json_values.map(orjson.dumps)


def _answered(candidates: list[Candidate]) -> None:
    """The decoder's contract, and validation's: each candidate is judged, no exception."""
    assert isinstance(candidates, list)
    for candidate in candidates:
        assert isinstance(candidate, Candidate)
        assert isinstance(validate_candidate(candidate, LIMITS), CloudEvent | Rejection)


def _decode(decoder: Any, message: Any) -> None:
    try:
        candidates = decoder.decode(message)
    except RequestRejected:
        return
    _answered(candidates)


@EXAMPLES
@given(media=_media, extra=headers, body=bodies)
def test_http_decoder_answers_any_request(media: str, extra: dict[str, str], body: bytes) -> None:
    _decode(HTTP, HttpRequest({"content-type": media, **extra}, body))


@EXAMPLES
@given(
    data=bodies,
    attributes=st.dictionaries(_header_names | _text, _text, max_size=6),
    message=json_values,
    raw=bodies,
)
def test_pubsub_decoder_answers_any_push(
    data: bytes, attributes: dict[str, str], message: Any, raw: bytes
) -> None:
    wrapped = {
        "subscription": "projects/p/subscriptions/s",
        "message": {
            "data": base64.b64encode(data).decode(),
            "attributes": attributes,
            "messageId": "1",
            "publishTime": "2026-12-01T00:00:00Z",
        },
    }
    _decode(PUBSUB, HttpRequest({"content-type": "application/json"}, orjson.dumps(wrapped)))
    _decode(PUBSUB, HttpRequest({"content-type": "application/json"}, orjson.dumps(message)))
    _decode(PUBSUB, HttpRequest({}, raw))
    unwrapped = {"x-goog-pubsub-message-id": "7", **attributes}
    _decode(PUBSUB, HttpRequest(unwrapped, data))


@EXAMPLES
@given(
    body=bodies,
    media=st.none() | _media,
    message_id=st.none() | _text,
    type_=st.none() | _text,
    amqp_headers=st.none()
    | st.dictionaries(
        st.sampled_from(["cloudEvents:id", "cloudEvents:source", "cloudEvents_type", "x"]) | _text,
        _scalars | st.binary(max_size=8),
        max_size=6,
    ),
    stamp=st.none() | st.datetimes(timezones=st.none() | st.just(UTC)),
)
def test_amqp_decoder_answers_any_delivery(  # noqa: PLR0917 - hypothesis passes them by name
    body: bytes,
    media: str | None,
    message_id: str | None,
    type_: str | None,
    amqp_headers: dict[str, Any] | None,
    stamp: datetime | None,
) -> None:
    delivery = AmqpMessage(body, media, message_id, type_, stamp, amqp_headers)
    _answered(AMQP.decode(delivery))  # a message source never raises: it quarantines


def test_too_wide_json_is_a_documented_rejection() -> None:
    wide = {f"k{i}": i for i in range(LIMITS.max_json_object_keys + 1)}
    deep = [[[wide]]]
    for document in (deep, {"specversion": "1.0", "data": wide}):
        request = HttpRequest({"content-type": "application/json"}, orjson.dumps(document))
        with pytest.raises(RequestRejected) as rejected:
            HTTP.decode(request)
        assert rejected.value.code == "request.json_too_complex"
    (candidate,) = AMQP.decode(AmqpMessage(orjson.dumps(deep), "application/json"))
    assert candidate.rejection is not None
    assert candidate.rejection.code == "request.json_too_complex"


def test_width_is_judged_per_object_not_per_body() -> None:
    """Many narrow events hold more members in all than one object may: accepted; one
    wide object among them, however deep, is still refused (the colon count only ever
    spares the walk where no object can be too wide)."""
    narrow = {"specversion": "1.0", "id": "1", "source": "/s", "type": "t", "data": {"a": 1}}
    batch = orjson.dumps([narrow] * LIMITS.max_json_object_keys)
    assert len(HTTP.decode(_json_request(batch))) == LIMITS.max_json_object_keys
    wide = orjson.dumps({f"k{i}": i for i in range(LIMITS.max_json_object_keys + 1)})
    # Deeper than orjson writes (254 levels), so built by hand: the walk must still run.
    deep = b"[" * 300 + wide + b"]" * 300
    for data in (b'{"x":[' + wide + b"]}", deep):
        hidden = orjson.dumps(narrow)[:-1].replace(b'{"a":1}', data) + b"}"
        with pytest.raises(RequestRejected) as rejected:
            HTTP.decode(_json_request(batch[:-1] + b"," + hidden + b"]"))
        assert rejected.value.code == "request.json_too_complex"


def _json_request(body: bytes) -> HttpRequest:
    return HttpRequest({"content-type": "application/json"}, body)
