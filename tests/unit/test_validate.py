"""Envelope validation: `validate_candidate`, `find_nul`, `safe_attributes` (pure, no I/O)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

from app.config import LimitSettings
from app.errors import ErrorCode
from app.model.events import BinaryData, Candidate, CloudEvent, Transport
from app.model.outcomes import Rejection
from app.sources.validate import find_nul, safe_attributes, validate_candidate

PLANTED = "secret@example.com"  # a personal value that must never be echoed
LIMITS = LimitSettings(
    max_body_bytes=1024 * 1024,
    max_events_per_request=1000,
    max_event_bytes=4096,
    max_attribute_chars=128,
)
REQUIRED = ("specversion", "id", "source", "type")
_DROP = object()


def event(**overrides: Any) -> dict[str, Any]:
    """A minimal valid structured event; an override of `_DROP` removes the attribute."""
    raw: dict[str, Any] = {
        "specversion": "1.0",
        "id": "evt-1",
        "source": "/orders",
        "type": "com.example.order.created",
    }
    for name, value in overrides.items():
        if value is _DROP:
            raw.pop(name, None)
        else:
            raw[name] = value
    return raw


def check(
    raw: Any, *, limits: LimitSettings = LIMITS, may_hold_nul: bool = True
) -> CloudEvent | Rejection:
    return validate_candidate(
        Candidate(raw=raw, transport=Transport.HTTP, may_hold_nul=may_hold_nul), limits
    )


def accepted(raw: Any, **kwargs: Any) -> CloudEvent:
    result = check(raw, **kwargs)
    assert isinstance(result, CloudEvent), result
    return result


def rejected(raw: Any, **kwargs: Any) -> Rejection:
    result = check(raw, **kwargs)
    assert isinstance(result, Rejection), result
    return result


# --- the happy path -----------------------------------------------------------------------


def test_minimal_event_is_accepted_with_defaults() -> None:
    result = accepted(event())
    assert result.specversion == "1.0"
    assert result.id == "evt-1"
    assert result.source == "/orders"
    assert result.type == "com.example.order.created"
    assert result.key == ("/orders", "evt-1")
    assert result.time is None
    assert result.subject is None
    assert result.datacontenttype is None
    assert result.dataschema is None
    assert result.data is None
    assert result.data_is_base64 is False
    assert result.extensions == {}
    assert result.transport is Transport.HTTP
    expected_size = sum(len(name) + len(value) for name, value in event().items())
    expected_size -= len("specversion") + len("1.0")  # specversion is not counted
    assert result.size == expected_size


def test_optional_attributes_are_carried() -> None:
    result = accepted(
        event(
            subject="user-42",
            datacontenttype="application/json",
            dataschema="https://example.com/schema.json",
            data={"total": 12.5, "items": [1, 2]},
        )
    )
    assert result.subject == "user-42"
    assert result.datacontenttype == "application/json"
    assert result.dataschema == "https://example.com/schema.json"
    assert result.data == {"total": 12.5, "items": [1, 2]}
    assert result.data_is_base64 is False


@pytest.mark.parametrize("data", [0, False, "", [], {}, "text", 3.25])
def test_falsy_and_scalar_data_are_kept(data: Any) -> None:
    result = accepted(event(data=data))
    assert result.data == data


def test_transport_is_taken_from_the_candidate() -> None:
    candidate = Candidate(raw=event(), transport=Transport.AMQP)
    result = validate_candidate(candidate, LIMITS)
    assert isinstance(result, CloudEvent)
    assert result.transport is Transport.AMQP


# --- required attributes and specversion ---------------------------------------------------


@pytest.mark.parametrize("name", REQUIRED)
def test_missing_required_attribute(name: str) -> None:
    result = rejected(event(**{name: _DROP}))
    assert result.code is ErrorCode.MISSING_ATTRIBUTE
    assert result.field == name
    assert name in result.message


@pytest.mark.parametrize("name", REQUIRED)
def test_null_required_attribute_is_missing(name: str) -> None:
    result = rejected(event(**{name: None}))
    assert result.code is ErrorCode.MISSING_ATTRIBUTE
    assert result.field == name


@pytest.mark.parametrize("version", ["0.3", 1.0, 1, "1", "1.0 ", "2.0", True, ["1.0"]])
def test_bad_specversion(version: Any) -> None:
    result = rejected(event(specversion=version))
    assert result.code is ErrorCode.BAD_SPECVERSION
    assert result.field == "specversion"


@pytest.mark.parametrize("name", ["id", "source", "type"])
@pytest.mark.parametrize("value", [7, 1.5, True, ["x"], {"a": "b"}])
def test_non_string_core_attribute(name: str, value: Any) -> None:
    result = rejected(event(**{name: value}))
    assert result.code is ErrorCode.INVALID_ATTRIBUTE
    assert result.field == name


@pytest.mark.parametrize("name", ["id", "source", "type", "subject", "datacontenttype"])
def test_empty_string_attribute(name: str) -> None:
    result = rejected(event(**{name: ""}))
    assert result.code is ErrorCode.INVALID_ATTRIBUTE
    assert result.field == name
    assert "empty" in result.message


@pytest.mark.parametrize("name", ["subject", "datacontenttype", "dataschema", "time"])
def test_non_string_optional_attribute(name: str) -> None:
    result = rejected(event(**{name: 12}))
    assert result.code is ErrorCode.INVALID_ATTRIBUTE
    assert result.field == name


@pytest.mark.parametrize(
    "name", ["time", "subject", "datacontenttype", "dataschema", "data", "data_base64"]
)
def test_null_optional_attribute_is_absent(name: str) -> None:
    result = accepted(event(**{name: None}))
    assert getattr(result, name, None) is None
    assert result.data is None
    assert result.data_is_base64 is False
    assert name not in result.extensions


def test_null_extension_is_absent() -> None:
    assert accepted(event(traceparent=None)).extensions == {}


# --- time ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-03-05T10:20:30Z", datetime(2024, 3, 5, 10, 20, 30, tzinfo=UTC)),
        ("2024-03-05T10:20:30z", datetime(2024, 3, 5, 10, 20, 30, tzinfo=UTC)),
        ("2024-03-05t10:20:30Z", datetime(2024, 3, 5, 10, 20, 30, tzinfo=UTC)),
        ("2024-03-05 10:20:30Z", datetime(2024, 3, 5, 10, 20, 30, tzinfo=UTC)),
        ("2024-03-05T10:20:30+00:00", datetime(2024, 3, 5, 10, 20, 30, tzinfo=UTC)),
        (
            "2024-03-05T10:20:30+05:30",
            datetime(2024, 3, 5, 10, 20, 30, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        ),
        (
            "2024-03-05T10:20:30-08:00",
            datetime(2024, 3, 5, 10, 20, 30, tzinfo=timezone(timedelta(hours=-8))),
        ),
        ("2024-03-05T10:20:30.5Z", datetime(2024, 3, 5, 10, 20, 30, 500000, tzinfo=UTC)),
        ("2024-03-05T10:20:30.123456Z", datetime(2024, 3, 5, 10, 20, 30, 123456, tzinfo=UTC)),
        # Nanosecond precision (Go, Java producers): truncated to microseconds, not refused.
        ("2024-03-05T10:20:30.123456789Z", datetime(2024, 3, 5, 10, 20, 30, 123456, tzinfo=UTC)),
        ("2024-02-29T00:00:00Z", datetime(2024, 2, 29, tzinfo=UTC)),
    ],
)
def test_valid_rfc3339_time(value: str, expected: datetime) -> None:
    result = accepted(event(time=value))
    assert result.time == expected  # the same instant
    assert result.time is not None
    assert result.time.utcoffset() == timedelta(0)  # normalized to UTC


@pytest.mark.parametrize(
    "value",
    [
        "2024-01-01",
        "yesterday",
        "2024-01-01T00:00:00",  # no offset: RFC 3339 requires one
        "2024-01-01T00:00Z",  # no seconds
        "20240101T000000Z",  # ISO 8601 basic format
        "2024-01-01T00:00:00+0100",  # offset without colon
        "2024-01-01T00:00:00.Z",  # empty fraction
        "2024-13-01T00:00:00Z",  # month 13
        "2023-02-29T00:00:00Z",  # not a leap year
        "2024-01-01T25:00:00Z",
        "2024-01-01T00:00:00+24:00",
        " 2024-01-01T00:00:00Z",
        "2024-01-01T00:00:00Z\n",
        "",
        "0001-01-01T00:00:00+01:00",  # before year 1 once in UTC
        "9999-12-31T23:59:59-01:00",  # after year 9999 once in UTC
    ],
)
def test_invalid_time(value: str) -> None:
    result = rejected(event(time=value))
    assert result.code is ErrorCode.INVALID_ATTRIBUTE
    assert result.field == "time"


# --- extension attributes ------------------------------------------------------------------


def test_extensions_are_kept_with_their_types() -> None:
    result = accepted(
        event(
            traceparent="00-abc-def-01",
            partitionkey="p1",
            sequence=42,
            negative=-(2**31),
            maxint=2**31 - 1,
            sampled=True,
            retried=False,
            abc123="x",
        )
    )
    assert result.extensions == {
        "traceparent": "00-abc-def-01",
        "partitionkey": "p1",
        "sequence": 42,
        "negative": -(2**31),
        "maxint": 2**31 - 1,
        "sampled": True,
        "retried": False,
        "abc123": "x",
    }
    assert type(result.extensions["sampled"]) is bool
    assert type(result.extensions["sequence"]) is int


def test_extensions_count_towards_size() -> None:
    plain = accepted(event())
    extended = accepted(event(region="eu", attempt=3))
    assert extended.size == plain.size + len("region") + len("eu") + len("attempt") + len("3")


@pytest.mark.parametrize(
    "name", ["Traceparent", "TRACE", "trace-parent", "trace_parent", "trace.parent", "é", "a b"]
)
def test_invalid_extension_name(name: str) -> None:
    result = rejected(event(**{name: PLANTED}))
    assert result.code is ErrorCode.INVALID_ATTRIBUTE_NAME
    assert PLANTED not in result.message
    assert result.field == name  # the quarantine row names the attribute (issue 11)


def test_extension_name_longer_than_limit_is_refused() -> None:
    result = rejected(event(**{"a" * (LIMITS.max_attribute_chars + 1): "v"}))
    assert result.code is ErrorCode.INVALID_ATTRIBUTE_NAME
    assert result.field == "a" * 64 + "…"


@pytest.mark.parametrize("value", [1.5, 0.0, {"nested": PLANTED}, [PLANTED], 2**31, -(2**31) - 1])
def test_invalid_extension_value(value: Any) -> None:
    result = rejected(event(myext=value))
    assert result.code is ErrorCode.INVALID_ATTRIBUTE
    assert result.field == "myext"
    assert PLANTED not in result.message
    assert str(value) not in result.message


def test_extension_string_longer_than_limit() -> None:
    result = rejected(event(myext="x" * (LIMITS.max_attribute_chars + 1)))
    assert result.code is ErrorCode.ATTRIBUTE_TOO_LONG
    assert result.field == "myext"


def test_extension_string_at_limit_is_accepted() -> None:
    value = "x" * LIMITS.max_attribute_chars
    assert accepted(event(myext=value)).extensions == {"myext": value}


# --- data and data_base64 ------------------------------------------------------------------


def test_data_base64_is_marked() -> None:
    encoded = base64.b64encode(b"\x00\x01binary\xff").decode()
    result = accepted(event(data_base64=encoded))
    assert result.data_is_base64 is True
    assert result.data == encoded


def test_data_base64_with_null_data_is_accepted() -> None:
    encoded = base64.b64encode(b"abc").decode()
    result = accepted(event(data=None, data_base64=encoded))
    assert result.data_is_base64 is True


def test_data_and_data_base64_together_are_refused() -> None:
    result = rejected(event(data={"a": 1}, data_base64=base64.b64encode(b"abc").decode()))
    assert result.code is ErrorCode.INVALID_ATTRIBUTE
    assert result.field == "data_base64"


@pytest.mark.parametrize("value", ["not base64!", "abc", "YW Jj", "YWJj\n", "YW=Jj"])
def test_invalid_base64_is_refused(value: str) -> None:
    result = rejected(event(data_base64=value))
    assert result.code is ErrorCode.INVALID_ATTRIBUTE
    assert result.field == "data_base64"
    assert value not in result.message


def test_non_string_data_base64_is_refused() -> None:
    result = rejected(event(data_base64=123))
    assert result.code is ErrorCode.INVALID_ATTRIBUTE
    assert result.field == "data_base64"


def test_binary_data_takes_precedence_over_structured_data() -> None:
    binary = BinaryData(value={"k": 1}, is_base64=False, size=7)
    candidate = Candidate(raw=event(), transport=Transport.HTTP, binary_data=binary)
    result = validate_candidate(candidate, LIMITS)
    assert isinstance(result, CloudEvent)
    assert result.data == {"k": 1}
    assert result.data_is_base64 is False
    assert result.size == accepted(event()).size + 7


def test_binary_base64_data_is_marked() -> None:
    binary = BinaryData(value="AAEC", is_base64=True, size=4)
    candidate = Candidate(raw=event(), transport=Transport.HTTP, binary_data=binary)
    result = validate_candidate(candidate, LIMITS)
    assert isinstance(result, CloudEvent)
    assert result.data_is_base64 is True


# --- NUL characters ------------------------------------------------------------------------


def test_nul_in_nested_data_string() -> None:
    raw = event(data={"user": {"names": ["ok", "bad\x00name"]}})
    result = rejected(raw)
    assert result.code is ErrorCode.NUL_CHARACTER
    assert result.field == "data.user.names[1]"


def test_nul_in_attribute() -> None:
    result = rejected(event(subject="user\x00" + PLANTED))
    assert result.code is ErrorCode.NUL_CHARACTER
    assert result.field == "subject"
    assert PLANTED not in result.message


def test_nul_in_extension_value() -> None:
    result = rejected(event(myext="a\x00b"))
    assert result.code is ErrorCode.NUL_CHARACTER
    assert result.field == "myext"


def test_nul_in_data_key_names_the_containing_object() -> None:
    result = rejected(event(data={"outer": {"ke\x00y": 1}}))
    assert result.code is ErrorCode.NUL_CHARACTER
    assert result.field == "data.outer"
    assert "\x00" not in (result.field or "")


def test_nul_in_top_level_key() -> None:
    result = rejected(event(**{"ext\x00": "v"}))
    assert result.code is ErrorCode.NUL_CHARACTER
    assert result.field == "$"


def test_nul_is_not_looked_for_when_the_source_proved_there_is_none() -> None:
    # The documented fast path: the HTTP source sets may_hold_nul=False only when the
    # body lacks the \u0000 escape, so validation skips the walk.
    result = accepted(event(data={"k": "a\x00b"}), may_hold_nul=False)
    assert result.data is not None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain", None),
        ("a\x00", "$"),
        (["a", "b\x00"], "[1]"),
        ({"a": {"b": [1, {"c": "\x00"}]}}, "a.b[1].c"),
        ({"a": 1, "b": None, "c": True, "d": 1.5}, None),
        ({"\x00": "v"}, "$"),
        ({"a": {"\x00": "v"}}, "a"),
        ({"a": "ok", "b": "\x00", "c": "\x00"}, "b"),
        (42, None),
        (None, None),
    ],
)
def test_find_nul_paths(value: Any, expected: str | None) -> None:
    assert find_nul(value) == expected


def test_find_nul_with_prefix() -> None:
    assert find_nul({"k": ["\x00"]}, "data") == "data.k[0]"
    assert find_nul("\x00", "data") == "data"
    assert find_nul({"x": "ok"}, "data") is None


# --- size limits ---------------------------------------------------------------------------


def test_event_larger_than_max_event_bytes() -> None:
    result = rejected(event(data={"blob": "x" * LIMITS.max_event_bytes}))
    assert result.code is ErrorCode.EVENT_TOO_LARGE
    assert result.field is None
    assert str(LIMITS.max_event_bytes) in result.message


def test_event_exactly_at_max_event_bytes_is_accepted() -> None:
    base = accepted(event(data=""))
    # `""` serializes to 2 characters; pad the string so the total hits the limit exactly.
    padding = LIMITS.max_event_bytes - base.size
    result = accepted(event(data="x" * padding))
    assert result.size == LIMITS.max_event_bytes
    assert rejected(event(data="x" * (padding + 1))).code is ErrorCode.EVENT_TOO_LARGE


def test_binary_data_size_counts_towards_the_limit() -> None:
    binary = BinaryData(value="x", is_base64=False, size=LIMITS.max_event_bytes)
    candidate = Candidate(raw=event(), transport=Transport.HTTP, binary_data=binary)
    result = validate_candidate(candidate, LIMITS)
    assert isinstance(result, Rejection)
    assert result.code is ErrorCode.EVENT_TOO_LARGE


def test_event_size_is_counted_in_utf8_bytes() -> None:
    data = "\u20ac" * 600  # 3 bytes each in UTF-8: 1800 bytes of data
    result = check(event(data=data), limits=LIMITS.model_copy(update={"max_event_bytes": 1000}))
    assert isinstance(result, Rejection)
    assert result.code is ErrorCode.EVENT_TOO_LARGE


@pytest.mark.parametrize(
    "name", ["id", "source", "type", "subject", "datacontenttype", "dataschema"]
)
def test_attribute_longer_than_max_attribute_chars(name: str) -> None:
    result = rejected(event(**{name: PLANTED + "x" * LIMITS.max_attribute_chars}))
    assert result.code is ErrorCode.ATTRIBUTE_TOO_LONG
    assert result.field == name
    assert PLANTED not in result.message


@pytest.mark.parametrize("name", ["id", "source", "type", "subject"])
def test_attribute_at_max_attribute_chars_is_accepted(name: str) -> None:
    value = "x" * LIMITS.max_attribute_chars
    assert getattr(accepted(event(**{name: value})), name) == value


def test_attribute_length_is_in_characters() -> None:
    value = "\u00e9" * LIMITS.max_attribute_chars  # 2 bytes each, still within the limit
    assert accepted(event(subject=value)).subject == value


# --- non-object candidates -----------------------------------------------------------------


@pytest.mark.parametrize("raw", [None, "event", 42, 1.5, True, [], [event()]])
def test_non_object_candidate_is_refused(raw: Any) -> None:
    result = rejected(raw)
    assert result.code is ErrorCode.INVALID_ATTRIBUTE
    assert result.field is None


# --- rejections never echo values ----------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        event(specversion=PLANTED),
        event(id=[PLANTED]),
        event(source={"x": PLANTED}),
        event(type=7, subject=PLANTED),
        event(subject=PLANTED + "x" * 200),
        event(subject="\x00" + PLANTED),
        event(time=PLANTED),
        event(data_base64=PLANTED),
        event(data=PLANTED, data_base64="YWJj"),
        event(data={"k": PLANTED + "\x00"}),
        event(myext=[PLANTED]),
        event(myext=PLANTED * 20),
        event(**{"Bad-Name": PLANTED}),
        event(data=PLANTED * 500),
        event(id=_DROP, subject=PLANTED),
    ],
)
def test_rejection_never_contains_the_offending_value(raw: dict[str, Any]) -> None:
    result = rejected(raw)
    assert PLANTED not in result.message
    assert PLANTED not in (result.field or "")
    assert "secret" not in repr(result)


# --- safe_attributes -----------------------------------------------------------------------


def test_safe_attributes_keeps_string_core_attributes() -> None:
    raw = event(
        time="2024-01-01T00:00:00Z",
        datacontenttype="application/json",
        dataschema="urn:schema",
        subject=PLANTED,
        data={"email": PLANTED},
    )
    assert safe_attributes(raw, LIMITS) == {
        "specversion": "1.0",
        "id": "evt-1",
        "source": "/orders",
        "type": "com.example.order.created",
        "time": "2024-01-01T00:00:00Z",
        "datacontenttype": "application/json",
        "dataschema": "urn:schema",
    }


@pytest.mark.parametrize(
    "raw",
    [
        event(subject=PLANTED, data=PLANTED),
        event(subject=PLANTED, data={"nested": PLANTED}),
        event(subject=PLANTED, data_base64=base64.b64encode(PLANTED.encode()).decode()),
        {"subject": PLANTED, "data": PLANTED},
        event(subject=PLANTED, myext=PLANTED, other=PLANTED),
    ],
)
def test_safe_attributes_never_includes_data_or_subject(raw: dict[str, Any]) -> None:
    kept = safe_attributes(raw, LIMITS)
    assert "data" not in kept
    assert "data_base64" not in kept
    assert "subject" not in kept
    assert PLANTED not in orjson.dumps(kept).decode()
    assert base64.b64encode(PLANTED.encode()).decode() not in orjson.dumps(kept).decode()


def test_safe_attributes_keeps_extension_names_only() -> None:
    raw = event(zeta=PLANTED, alpha=1, mid=True, **{"Bad-Name": "x", "trace_id": "y"})
    kept = safe_attributes(raw, LIMITS)
    assert kept["extensions"] == ["alpha", "mid", "zeta"]
    assert PLANTED not in orjson.dumps(kept).decode()


def test_safe_attributes_caps_extension_names() -> None:
    raw = event(**{f"ext{i:03d}": i for i in range(80)})
    names = safe_attributes(raw, LIMITS)["extensions"]
    assert len(names) == 50
    assert names == sorted(names)
    assert names[0] == "ext000"


def test_safe_attributes_drops_unsafe_values() -> None:
    raw = event(
        id="a\x00b",
        source="s" * (LIMITS.max_attribute_chars + 1),
        type=42,
        time=None,
        specversion=1.0,
    )
    assert safe_attributes(raw, LIMITS) == {}


def test_safe_attributes_of_a_non_object() -> None:
    assert safe_attributes([event()], LIMITS) == {}
    assert safe_attributes("event", LIMITS) == {}
    assert safe_attributes(None, LIMITS) == {}


def test_safe_attributes_without_extensions_has_no_extensions_key() -> None:
    assert "extensions" not in safe_attributes(event(), LIMITS)
