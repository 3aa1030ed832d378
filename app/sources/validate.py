"""Envelope validation: one decoded candidate in, a `CloudEvent` or a `Rejection` out.

Pure: no I/O, no clock, no settings object beyond the limits passed in. It checks what
CloudEvents 1.0 requires and what PostgreSQL could otherwise refuse mid-batch (a NUL in a
string, an index key too long), so that a batch, once formed, always writes whole.
Rejections name the offending attribute or path, never its value.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, StrictStr
from pydantic import ValidationError as PydanticValidationError

from app.config import LimitSettings
from app.errors import ErrorCode
from app.model.events import Candidate, CloudEvent, ExtensionValue
from app.model.outcomes import Rejection

NonEmptyStr = Annotated[StrictStr, Field(min_length=1)]

# RFC 3339 `date-time`: what CloudEvents' `time` must be (Python alone accepts more).
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_EXTENSION_NAME = re.compile(r"^[a-z0-9]+$")
_CORE_ATTRIBUTES = frozenset(
    {
        "specversion",
        "id",
        "source",
        "type",
        "time",
        "subject",
        "datacontenttype",
        "dataschema",
        "data",
        "data_base64",
    }
)
_INT32 = range(-(2**31), 2**31)
_SIZED_ATTRIBUTES = ("id", "source", "type", "subject", "datacontenttype", "dataschema", "time")


class Envelope(BaseModel):
    """The CloudEvents 1.0 context attributes, as the JSON event format spells them."""

    model_config = ConfigDict(extra="allow", frozen=True)

    specversion: Literal["1.0"]
    id: NonEmptyStr
    source: NonEmptyStr
    type: NonEmptyStr
    time: StrictStr | None = None
    subject: NonEmptyStr | None = None
    datacontenttype: NonEmptyStr | None = None
    dataschema: NonEmptyStr | None = None
    data: Any = None
    data_base64: StrictStr | None = None


class _Rejected(Exception):
    def __init__(self, code: ErrorCode, field: str | None, message: str) -> None:
        super().__init__(message)
        self.rejection = Rejection(code=code, field=field, message=message)


def validate_candidate(candidate: Candidate, limits: LimitSettings) -> CloudEvent | Rejection:
    if candidate.rejection is not None:
        return candidate.rejection
    try:
        return _validate(candidate, limits)
    except _Rejected as rejected:
        return rejected.rejection


def _validate(candidate: Candidate, limits: LimitSettings) -> CloudEvent:
    raw = candidate.raw
    if not isinstance(raw, dict):
        raise _Rejected(ErrorCode.INVALID_ATTRIBUTE, None, "an event must be a JSON object")
    nul_path = find_nul(raw) if candidate.may_hold_nul else None
    if nul_path is not None:
        raise _Rejected(
            ErrorCode.NUL_CHARACTER, nul_path, "strings must not contain the NUL character"
        )
    envelope = _parse_envelope(raw)
    extensions = _extensions(envelope, limits)
    time = _parse_time(envelope.time)
    data = _event_data(candidate, envelope)
    size = data.size + _attributes_size(envelope, extensions, limits)
    if size > limits.max_event_bytes:
        raise _Rejected(
            ErrorCode.EVENT_TOO_LARGE,
            None,
            f"event is {size} bytes; the limit is {limits.max_event_bytes}",
        )
    return CloudEvent(
        specversion=envelope.specversion,
        id=envelope.id,
        source=envelope.source,
        type=envelope.type,
        time=time,
        subject=envelope.subject,
        datacontenttype=envelope.datacontenttype,
        dataschema=envelope.dataschema,
        data=data.value,
        data_is_base64=data.is_base64,
        extensions=extensions,
        size=size,
        transport=candidate.transport,
        data_serialized=data.serialized,
    )


@dataclass(frozen=True, slots=True)
class _Data:
    value: Any
    is_base64: bool
    size: int  # UTF-8 bytes as stored
    serialized: bytes | None  # JSON `data` as measured, for the write to reuse


def _event_data(candidate: Candidate, envelope: Envelope) -> _Data:
    binary = candidate.binary_data
    if binary is not None:
        if not isinstance(binary.value, str | None):
            _serialized(binary.value)  # only to prove it can be stored
        return _Data(binary.value, binary.is_base64, binary.size, None)
    value, is_base64 = _structured_data(envelope)
    if value is None or is_base64:
        return _Data(value, is_base64, len(value) if is_base64 else 0, None)
    serialized = _serialized(value)
    return _Data(value, False, len(serialized), serialized)


def _parse_envelope(raw: dict[str, Any]) -> Envelope:
    # JSON `null` for an optional attribute means "absent" in the CloudEvents JSON format.
    present = {name: value for name, value in raw.items() if value is not None}
    try:
        return Envelope.model_validate(present)
    except PydanticValidationError as exc:
        raise _rejection_from_pydantic(exc) from None


def _rejection_from_pydantic(exc: PydanticValidationError) -> _Rejected:
    error = exc.errors(include_input=False, include_url=False)[0]
    field = ".".join(str(part) for part in error["loc"]) or None
    if error["type"] == "missing":
        return _Rejected(
            ErrorCode.MISSING_ATTRIBUTE, field, f"required attribute '{field}' is missing"
        )
    if field == "specversion":
        return _Rejected(ErrorCode.BAD_SPECVERSION, field, "specversion must be the string '1.0'")
    if error["type"] == "string_too_short":
        return _Rejected(
            ErrorCode.INVALID_ATTRIBUTE, field, f"attribute '{field}' must not be empty"
        )
    return _Rejected(ErrorCode.INVALID_ATTRIBUTE, field, f"attribute '{field}' must be a string")


def _extensions(envelope: Envelope, limits: LimitSettings) -> dict[str, ExtensionValue]:
    extensions: dict[str, ExtensionValue] = {}
    for name, value in (envelope.model_extra or {}).items():
        if not _EXTENSION_NAME.fullmatch(name) or len(name) > limits.max_attribute_chars:
            raise _Rejected(
                ErrorCode.INVALID_ATTRIBUTE_NAME,
                _shown_name(name),
                "extension attribute names must be lower-case ASCII letters and digits",
            )
        extensions[name] = _extension_value(name, value, limits)
    return extensions


_SHOWN_NAME_CHARS = 64


def _shown_name(name: str) -> str:
    """A rejected attribute's name as `field` may show it: a name, never a value, but
    unvetted, so cut short and without the NUL PostgreSQL text cannot hold."""
    shown = name.replace("\x00", "")[:_SHOWN_NAME_CHARS]
    return shown if len(shown) == len(name) else shown + "…"


def _extension_value(name: str, value: Any, limits: LimitSettings) -> ExtensionValue:
    # CloudEvents types: String, Integer (32-bit), Boolean; URI and Timestamp travel as strings.
    if isinstance(value, bool | str):
        if isinstance(value, str) and len(value) > limits.max_attribute_chars:
            raise _Rejected(
                ErrorCode.ATTRIBUTE_TOO_LONG,
                name,
                f"attribute '{name}' exceeds {limits.max_attribute_chars} characters",
            )
        return value
    if isinstance(value, int) and value in _INT32:
        return value
    raise _Rejected(
        ErrorCode.INVALID_ATTRIBUTE,
        name,
        f"extension attribute '{name}' must be a string, a 32-bit integer or a boolean",
    )


def _parse_time(value: str | None) -> datetime | None:
    if value is None:
        return None
    if not _RFC3339.fullmatch(value):
        raise _Rejected(ErrorCode.INVALID_ATTRIBUTE, "time", "time must be an RFC 3339 timestamp")
    try:
        # Normalized to UTC here: an offset that pushes year 1 into year 0 must be refused
        # now, not fail the batch's encoding later.
        return datetime.fromisoformat(value.replace("z", "Z")).astimezone(UTC)
    except (ValueError, OverflowError):
        raise _Rejected(
            ErrorCode.INVALID_ATTRIBUTE, "time", "time must be an RFC 3339 timestamp"
        ) from None


def _serialized(data: Any) -> bytes:
    try:
        return orjson.dumps(data)
    except orjson.JSONEncodeError:
        # JSON parses up to 1,024 levels deep but serializes only 254: such data could
        # never be written, and must be refused here rather than fail a batch.
        raise _Rejected(
            ErrorCode.INVALID_ATTRIBUTE, "data", "data nests too deeply (254 levels at most)"
        ) from None


def _structured_data(envelope: Envelope) -> tuple[Any, bool]:
    if envelope.data_base64 is not None:
        if "data" in envelope.model_fields_set:
            raise _Rejected(
                ErrorCode.INVALID_ATTRIBUTE,
                "data_base64",
                "an event carries data or data_base64, not both",
            )
        try:
            base64.b64decode(envelope.data_base64, validate=True)
        except binascii.Error:
            raise _Rejected(
                ErrorCode.INVALID_ATTRIBUTE, "data_base64", "data_base64 must be valid base64"
            ) from None
        return envelope.data_base64, True
    return envelope.data, False


def _attributes_size(
    envelope: Envelope, extensions: dict[str, ExtensionValue], limits: LimitSettings
) -> int:
    """UTF-8 bytes of names and values, as they will be stored; refuses an attribute too
    long for an index entry (it would fail the whole batch inside PostgreSQL)."""
    size = 0
    values = envelope.__dict__
    for name in _SIZED_ATTRIBUTES:
        value = values[name]
        if value is None:
            continue
        if len(value) > limits.max_attribute_chars:
            raise _Rejected(
                ErrorCode.ATTRIBUTE_TOO_LONG,
                name,
                f"attribute '{name}' exceeds {limits.max_attribute_chars} characters",
            )
        size += len(name) + (len(value) if value.isascii() else len(value.encode()))
    for name, value in extensions.items():
        size += len(name) + len(str(value).encode())
    return size


def find_nul(value: Any, path: str = "") -> str | None:
    """The path of the first string (or object key) holding `\\x00`, or None.

    PostgreSQL's text and jsonb cannot store it, so it is refused before a batch forms.
    """
    if isinstance(value, str):
        return (path or "$") if "\x00" in value else None
    if isinstance(value, dict):
        for key, member in value.items():
            member_path = f"{path}.{key}" if path else str(key)
            if "\x00" in key:
                return path or "$"
            found = find_nul(member, member_path)
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, member in enumerate(value):
            found = find_nul(member, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def safe_attributes(raw: Any, limits: LimitSettings) -> dict[str, Any]:
    """What of a rejected event's attributes may be kept in quarantine.

    String attributes within the length limit and free of NUL; extension attributes by
    name only (their values are unvetted); never `data`, never `subject`.
    """
    if not isinstance(raw, dict):
        return {}
    kept: dict[str, Any] = {}
    for name in ("specversion", "id", "source", "type", "time", "datacontenttype", "dataschema"):
        value = raw.get(name)
        if (
            isinstance(value, str)
            and "\x00" not in value
            and len(value) <= limits.max_attribute_chars
        ):
            kept[name] = value
    extension_names = sorted(
        name
        for name in raw
        if isinstance(name, str)
        and name not in _CORE_ATTRIBUTES
        and _EXTENSION_NAME.fullmatch(name)
    )
    if extension_names:
        kept["extensions"] = extension_names[:50]
    return kept
