"""The HTTP protocol binding: `HttpDecoder` turns headers and a body into candidates."""

from __future__ import annotations

import base64
import re
from typing import Any

import orjson
import pytest

from app import errors
from app.config import LimitSettings
from app.errors import ErrorCode, InvalidInput, RequestRejected
from app.model.events import Candidate, CloudEvent, Transport
from app.sources import cloudevents
from app.sources.http import HttpDecoder, HttpRequest
from app.sources.validate import validate_candidate

LIMITS = LimitSettings(
    max_body_bytes=1024 * 1024,
    max_events_per_request=5,
    max_event_bytes=64 * 1024,
    max_attribute_chars=1024,
)
STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"

# The statuses the module docstring of app/errors.py promises for request-level refusals.
PROMISED_STATUS = {
    ErrorCode.MALFORMED_JSON: 400,
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: 415,
    ErrorCode.TOO_MANY_EVENTS: 413,
    ErrorCode.NOT_AN_EVENT: 422,
    ErrorCode.NUL_CHARACTER: 422,
}


def event(number: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"evt-{number}",
        "source": "/orders",
        "type": "com.example.order.created",
        **extra,
    }


def binary_headers(content_type: str | None = "application/json", **ce: str) -> dict[str, str]:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": "evt-1",
        "ce-source": "/orders",
        "ce-type": "com.example.order.created",
    }
    headers.update({f"ce-{name}": value for name, value in ce.items()})
    if content_type is not None:
        headers["content-type"] = content_type
    return headers


def decode(headers: dict[str, str], body: bytes) -> list[Candidate]:
    return HttpDecoder(LIMITS).decode(HttpRequest(headers, body))


def refused(headers: dict[str, str], body: bytes, code: ErrorCode) -> RequestRejected:
    with pytest.raises(RequestRejected) as caught:
        decode(headers, body)
    error = caught.value
    assert error.code is code
    assert error.code.http_status == PROMISED_STATUS[code]
    assert isinstance(error, InvalidInput)
    assert not error.code.retryable
    return error


def validated(candidate: Candidate) -> CloudEvent:
    result = validate_candidate(candidate, LIMITS)
    assert isinstance(result, CloudEvent), result
    return result


# --- structured and batched modes ----------------------------------------------------------


def test_structured_single_event() -> None:
    body = orjson.dumps(event(data={"a": 1}))
    [candidate] = decode({"content-type": STRUCTURED}, body)
    assert candidate.raw == event(data={"a": 1})
    assert candidate.transport is Transport.HTTP
    assert candidate.binary_data is None
    assert candidate.may_hold_nul is False
    assert validated(candidate).data == {"a": 1}


def test_batch_of_events_keeps_order() -> None:
    events = [event(n) for n in range(1, 4)]
    candidates = decode({"content-type": BATCH}, orjson.dumps(events))
    assert [c.raw for c in candidates] == events
    assert all(c.binary_data is None for c in candidates)


def test_empty_batch_yields_no_candidates() -> None:
    assert decode({"content-type": BATCH}, b"[]") == []


def test_batch_items_are_not_checked_here() -> None:
    # A non-object inside a batch is a per-event problem, left to validation.
    candidates = decode({"content-type": BATCH}, orjson.dumps([event(), 42, "x"]))
    assert [c.raw for c in candidates] == [event(), 42, "x"]


def test_application_json_object_is_one_event() -> None:
    [candidate] = decode({"content-type": "application/json"}, orjson.dumps(event()))
    assert candidate.raw == event()
    assert candidate.binary_data is None


def test_application_json_array_is_a_batch() -> None:
    events = [event(1), event(2)]
    candidates = decode({"content-type": "application/json"}, orjson.dumps(events))
    assert [c.raw for c in candidates] == events


@pytest.mark.parametrize(
    "content_type",
    [
        f"{STRUCTURED}; charset=utf-8",
        f"{STRUCTURED};charset=UTF-8",
        "Application/CloudEvents+JSON",
        f"  {STRUCTURED}  ; charset=utf-8",
    ],
)
def test_structured_media_type_parameters_and_case_are_ignored(content_type: str) -> None:
    [candidate] = decode({"content-type": content_type}, orjson.dumps(event()))
    assert candidate.raw == event()
    assert candidate.binary_data is None


def test_batch_media_type_with_charset() -> None:
    candidates = decode({"content-type": f"{BATCH}; charset=utf-8"}, orjson.dumps([event()]))
    assert len(candidates) == 1


def test_application_json_with_charset_is_structured() -> None:
    candidates = decode(
        {"content-type": "application/json; charset=utf-8"}, orjson.dumps([event(1), event(2)])
    )
    assert len(candidates) == 2


def test_transport_is_passed_through() -> None:
    decoder = HttpDecoder(LIMITS, transport=Transport.PUBSUB)
    [candidate] = decoder.decode(HttpRequest({"content-type": STRUCTURED}, orjson.dumps(event())))
    assert candidate.transport is Transport.PUBSUB


def test_structured_content_type_wins_over_ce_headers() -> None:
    headers = binary_headers(STRUCTURED, id="from-header")
    [candidate] = decode(headers, orjson.dumps(event()))
    assert candidate.raw == event()
    assert candidate.binary_data is None


# --- request-level refusals ----------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"content-type": "text/plain"},
        {"content-type": "application/xml"},
        {"content-type": "application/x-www-form-urlencoded"},
        {"content-type": "application/merge-patch+json"},
        {},
        {"content-type": ""},
        {"x-ce-specversion": "1.0", "content-type": "text/plain"},
    ],
)
def test_unsupported_media_type_without_ce_headers(headers: dict[str, str]) -> None:
    error = refused(headers, orjson.dumps(event()), ErrorCode.UNSUPPORTED_MEDIA_TYPE)
    assert error.field == "content-type"


@pytest.mark.parametrize("content_type", [STRUCTURED, BATCH, "application/json"])
@pytest.mark.parametrize(
    "body", [b"", b"{", b"{'a': 1}", b"[1, 2,]", b"nul", b'{"a": "\x00"}', b"\xff\xfe"]
)
def test_malformed_json(content_type: str, body: bytes) -> None:
    error = refused({"content-type": content_type}, body, ErrorCode.MALFORMED_JSON)
    assert error.field == "body"


@pytest.mark.parametrize(
    ("content_type", "document"),
    [
        (STRUCTURED, [event()]),
        (STRUCTURED, []),
        (BATCH, event()),
        (STRUCTURED, "event"),
        (BATCH, 42),
        ("application/json", 42),
        ("application/json", "event"),
        ("application/json", None),
        ("application/json", True),
    ],
)
def test_not_an_event(content_type: str, document: Any) -> None:
    error = refused({"content-type": content_type}, orjson.dumps(document), ErrorCode.NOT_AN_EVENT)
    assert error.field == "body"


@pytest.mark.parametrize("content_type", [BATCH, "application/json"])
def test_too_many_events(content_type: str) -> None:
    events = [event(n) for n in range(LIMITS.max_events_per_request + 1)]
    error = refused({"content-type": content_type}, orjson.dumps(events), ErrorCode.TOO_MANY_EVENTS)
    assert str(LIMITS.max_events_per_request) in error.message


def test_exactly_max_events_is_accepted() -> None:
    events = [event(n) for n in range(LIMITS.max_events_per_request)]
    assert len(decode({"content-type": BATCH}, orjson.dumps(events))) == len(events)


def test_malformed_json_message_does_not_echo_the_body() -> None:
    secret = b"secret@example.com"
    error = refused(
        {"content-type": STRUCTURED}, b'{"subject": "' + secret, ErrorCode.MALFORMED_JSON
    )
    assert secret.decode() not in error.message


# --- the NUL fast-path flag ----------------------------------------------------------------


def test_may_hold_nul_only_when_the_body_has_the_escape() -> None:
    clean = decode({"content-type": BATCH}, orjson.dumps([event(1), event(2)]))
    assert [c.may_hold_nul for c in clean] == [False, False]
    dirty = decode({"content-type": BATCH}, orjson.dumps([event(1), event(2, data="a\x00b")]))
    assert b"\\u0000" in orjson.dumps(event(data="a\x00b"))
    assert [c.may_hold_nul for c in dirty] == [True, True]


def test_nul_in_structured_event_is_found_by_validation() -> None:
    [candidate] = decode({"content-type": STRUCTURED}, orjson.dumps(event(data={"k": "\x00"})))
    assert candidate.may_hold_nul is True
    result = validate_candidate(candidate, LIMITS)
    assert not isinstance(result, CloudEvent)
    assert result.code is ErrorCode.NUL_CHARACTER
    assert result.field == "data.k"


def test_other_escapes_do_not_set_the_flag() -> None:
    body = orjson.dumps(event(data="tab\there \u0001 \u00e9 \\u0000-literal"))
    # orjson escapes the literal backslash, so the body holds `\\u0000`, which does contain
    # the six bytes `\u0000`: a harmless false positive. Without it, nothing sets the flag.
    plain = orjson.dumps(event(data="tab\there \u0001 \u00e9"))
    [candidate] = decode({"content-type": STRUCTURED}, plain)
    assert candidate.may_hold_nul is False
    [conservative] = decode({"content-type": STRUCTURED}, body)
    assert conservative.may_hold_nul is True
    assert validated(conservative).data is not None


# --- binary mode ---------------------------------------------------------------------------


def test_binary_mode_headers_become_attributes() -> None:
    headers = binary_headers(
        "application/json",
        subject="user-1",
        time="2024-01-01T00:00:00Z",
        traceparent="00-abc-01",
    )
    [candidate] = decode(headers, orjson.dumps({"total": 3}))
    assert candidate.raw == {
        "specversion": "1.0",
        "id": "evt-1",
        "source": "/orders",
        "type": "com.example.order.created",
        "subject": "user-1",
        "time": "2024-01-01T00:00:00Z",
        "traceparent": "00-abc-01",
        "datacontenttype": "application/json",
    }
    assert candidate.binary_data is not None
    assert candidate.binary_data.value == {"total": 3}
    assert candidate.binary_data.is_base64 is False
    assert candidate.binary_data.size == len(orjson.dumps({"total": 3}))
    result = validated(candidate)
    assert result.extensions == {"traceparent": "00-abc-01"}
    assert result.datacontenttype == "application/json"


def test_binary_mode_ignores_non_ce_headers() -> None:
    headers = {**binary_headers(), "x-request-id": "r1", "authorization": "Bearer t"}
    [candidate] = decode(headers, b"{}")
    assert set(candidate.raw) == {"specversion", "id", "source", "type", "datacontenttype"}


def test_binary_mode_datacontenttype_keeps_the_full_header() -> None:
    [candidate] = decode(binary_headers("application/json; charset=utf-8"), b'{"a":1}')
    assert candidate.raw["datacontenttype"] == "application/json; charset=utf-8"
    assert candidate.binary_data is not None
    assert candidate.binary_data.value == {"a": 1}


@pytest.mark.parametrize(
    ("encoded", "decoded"),
    [
        ("%2Forders%2Fnew", "/orders/new"),
        ("caf%C3%A9", "caf\u00e9"),
        ("a%20b", "a b"),
        ("100%25", "100%"),
        ("plain", "plain"),
        ("a+b", "a+b"),  # percent-decoding, not form decoding
    ],
)
def test_binary_mode_header_values_are_percent_decoded(encoded: str, decoded: str) -> None:
    [candidate] = decode(binary_headers(source=encoded), b"{}")
    assert candidate.raw["source"] == decoded


def test_binary_mode_percent_encoded_nul_is_caught_by_validation() -> None:
    [candidate] = decode(binary_headers(subject="a%00b"), b"{}")
    assert candidate.raw["subject"] == "a\x00b"
    assert candidate.may_hold_nul is True
    result = validate_candidate(candidate, LIMITS)
    assert not isinstance(result, CloudEvent)
    assert result.code is ErrorCode.NUL_CHARACTER
    assert result.field == "subject"


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/vnd.example+json", "text/json+json"]
)
def test_binary_mode_json_body_is_parsed(content_type: str) -> None:
    body = b'{ "b" : [1, 2.5, "x", null, true] }'
    [candidate] = decode(binary_headers(content_type), body)
    assert candidate.binary_data is not None
    assert candidate.binary_data.value == {"b": [1, 2.5, "x", None, True]}
    # Re-serialized compactly, not stored verbatim.
    assert candidate.binary_data.value == {"b": [1, 2.5, "x", None, True]}
    assert candidate.binary_data.is_base64 is False


def test_binary_mode_json_scalar_body() -> None:
    [candidate] = decode(binary_headers(), b'"just a string"')
    assert candidate.binary_data is not None
    assert candidate.binary_data.value == "just a string"


def test_binary_mode_malformed_json_body() -> None:
    error = refused(binary_headers(), b"{not json", ErrorCode.MALFORMED_JSON)
    assert error.field == "body"


@pytest.mark.parametrize("content_type", ["text/plain", "text/plain; charset=utf-8", "text/csv"])
def test_binary_mode_text_body_is_kept_as_string(content_type: str) -> None:
    text = 'h\u00e9llo, "world"\nline 2'
    [candidate] = decode(binary_headers(content_type), text.encode())
    assert candidate.binary_data is not None
    assert candidate.binary_data.is_base64 is False
    assert candidate.binary_data.value == text
    assert candidate.binary_data.size == len(text.encode())
    assert validated(candidate).data_is_base64 is False


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/octet-stream", b"\x00\x01\x02\xff binary"),
        ("image/png", b"\x89PNG\r\n\x1a\n"),
        ("text/plain", b"invalid utf-8 \xff\xfe"),
        ("text/plain", b"text with a NUL \x00 inside"),
    ],
)
def test_binary_mode_other_bodies_are_base64(content_type: str, body: bytes) -> None:
    [candidate] = decode(binary_headers(content_type), body)
    assert candidate.binary_data is not None
    assert candidate.binary_data.is_base64 is True
    encoded = candidate.binary_data.value
    assert base64.b64decode(encoded, validate=True) == body
    assert candidate.binary_data.size == len(encoded)
    result = validated(candidate)
    assert result.data_is_base64 is True
    assert result.datacontenttype == content_type


def test_binary_mode_without_content_type_is_base64_and_has_no_datacontenttype() -> None:
    [candidate] = decode(binary_headers(None), b"raw bytes")
    assert "datacontenttype" not in candidate.raw
    assert candidate.binary_data is not None
    assert candidate.binary_data.is_base64 is True
    assert base64.b64decode(candidate.binary_data.value) == b"raw bytes"


@pytest.mark.parametrize("body", [b'{"order": 7}', b"[1, 2]", b'"text"', b"42"])
def test_binary_mode_without_content_type_reads_json_as_json(body: bytes) -> None:
    """What the CloudEvents SDK's `to_binary` sends for dict data (issue 11)."""
    [candidate] = decode(binary_headers(None), body)
    assert candidate.binary_data is not None
    assert candidate.binary_data.is_base64 is False
    assert candidate.binary_data.value == orjson.loads(body)
    assert validated(candidate).datacontenttype is None


@pytest.mark.parametrize(
    "content_type", ["application/xml", "application/atom+xml; charset=utf-8", "application/yaml"]
)
def test_binary_mode_textual_application_types_are_text(content_type: str) -> None:
    [candidate] = decode(binary_headers(content_type), b"<order id='7'/>")
    assert candidate.binary_data is not None
    assert (candidate.binary_data.is_base64, candidate.binary_data.value) == (
        False,
        "<order id='7'/>",
    )


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", None])
def test_binary_mode_empty_body_has_no_data(content_type: str | None) -> None:
    [candidate] = decode(binary_headers(content_type), b"")
    assert candidate.binary_data is not None
    assert candidate.binary_data.value is None
    assert candidate.binary_data.is_base64 is False
    assert candidate.binary_data.size == 0
    result = validated(candidate)
    assert result.data is None
    assert result.data_is_base64 is False


@pytest.mark.parametrize(
    ("document", "path"),
    [
        ({"user": {"name": "a\x00b"}}, "data.user.name"),
        ({"list": ["ok", "\x00"]}, "data.list[1]"),
        ("\x00", "data"),
        ({"outer": {"ke\x00y": 1}}, "data.outer"),
    ],
)
def test_binary_mode_json_body_with_nul_is_refused(document: Any, path: str) -> None:
    body = orjson.dumps(document)
    assert b"\\u0000" in body
    error = refused(binary_headers(), body, ErrorCode.NUL_CHARACTER)
    assert error.field == path
    assert error.field is not None
    assert error.field.startswith("data")
    assert "\x00" not in error.message


def test_binary_mode_application_json_with_ce_headers_is_binary() -> None:
    # application/json plus ce-specversion is binary mode: the body is `data`, not an event.
    body = orjson.dumps(event(99))
    [candidate] = decode(binary_headers("application/json"), body)
    assert candidate.raw["id"] == "evt-1"
    assert candidate.binary_data is not None
    assert candidate.binary_data.value == event(99)


def test_binary_mode_invalid_attributes_are_left_to_validation() -> None:
    headers = binary_headers("text/plain", **{"bad-name": "x"})
    del headers["ce-id"]
    [candidate] = decode(headers, b"hi")
    result = validate_candidate(candidate, LIMITS)
    assert not isinstance(result, CloudEvent)
    assert result.code is ErrorCode.MISSING_ATTRIBUTE
    assert result.field == "id"


# --- helpers and the status promises --------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "media"),
    [
        (None, ""),
        ("", ""),
        ("Application/JSON; charset=utf-8", "application/json"),
        (" text/plain ", "text/plain"),
    ],
)
def test_media_type(header: str | None, media: str) -> None:
    assert cloudevents.media_type(header) == media


@pytest.mark.parametrize(
    ("media", "expected"),
    [
        ("application/json", True),
        ("application/cloudevents+json", True),
        ("application/vnd.api+json", True),
        ("text/plain", False),
        ("application/jsonp", False),
        ("", False),
    ],
)
def test_is_json_media_type(media: str, expected: bool) -> None:
    assert cloudevents.is_json_media_type(media) is expected


def test_errors_docstring_promises_these_statuses() -> None:
    # RequestRejected is documented as 400/413/415/422: every code HttpDecoder raises
    # maps into that set, with the specific status listed above.
    promised = re.search(r"RequestRejected.*\(([\d/]+)\)", errors.__doc__ or "")
    assert promised is not None
    allowed = {int(status) for status in promised.group(1).split("/")}
    for code, status in PROMISED_STATUS.items():
        assert code.http_status == status
        assert status in allowed
