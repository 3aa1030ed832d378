"""What every source shares: CloudEvents media types, JSON and `data` typing, and the
`Decoder` protocol each source implements.

A decoder turns one wire message (an HTTP request, a Pub/Sub push, an AMQP delivery)
into the `Candidate`s it holds, in order. It raises `RequestRejected` only when nothing
of the message can be answered event by event (an HTTP body that is not JSON); a message
source whose single message cannot be decoded returns it as a rejected candidate
instead (`rejected_candidate`), so it is quarantined and acknowledged rather than
redelivered forever. Decoders are pure: no I/O, no clock.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import orjson

from app.config import LimitSettings
from app.errors import ErrorCode, RequestRejected
from app.model.events import BinaryData, Candidate, Transport
from app.model.outcomes import Rejection
from app.sources.validate import find_nul

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
JSON = "application/json"
# JSON can only spell a NUL as this escape: bytes without it hold no NUL in any string.
NUL_ESCAPE = b"\\u0000"

Wire_contra = TypeVar("Wire_contra", contravariant=True)


class Decoder(Protocol[Wire_contra]):
    def decode(self, message: Wire_contra) -> list[Candidate]:
        """The message's events as candidates, in order (see the module docstring)."""
        ...


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def is_json_media_type(media: str) -> bool:
    return media == JSON or media.endswith("+json")


def parse_json(body: bytes, limits: LimitSettings | None = None) -> Any:
    """The parsed body; with `limits`, refused (`request.json_too_complex`) when an object
    in it holds more than `max_json_object_keys` members: every later stage walks what
    this returns. (Depth: orjson refuses past 1024 levels, validation past 254.)"""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RequestRejected(
            f"body is not valid JSON: {exc.msg} at position {exc.pos}",
            code=ErrorCode.MALFORMED_JSON,
            field="body",
        ) from None
    if limits is not None and body.count(b":") > limits.max_json_object_keys:
        _check_width(document, limits.max_json_object_keys)
    return document


# Every member of a JSON object is written with one `:` outside strings (colons inside
# strings only add to the count), so JSON text holding at most `max_keys` colons cannot
# hold an object wider than that: counting bytes in C spares walking every node in Python,
# which cost more than parsing the body.
def _may_be_wider(value: Any, max_keys: int) -> bool:
    try:
        return orjson.dumps(value).count(b":") > max_keys
    except orjson.JSONEncodeError:  # nested deeper than orjson writes (254): walk it
        return True


def _check_width(document: Any, max_keys: int) -> None:
    items = document if isinstance(document, list) else [document]
    for item in items:
        if isinstance(item, dict | list) and _may_be_wider(item, max_keys):
            _walk_width(item, max_keys)


def _walk_width(document: Any, max_keys: int) -> None:
    """Iterative, so no document can exhaust the stack here either."""
    pending: list[Any] = [document]
    while pending:
        value = pending.pop()
        if isinstance(value, dict):
            if len(value) > max_keys:
                raise _too_complex(f"a JSON object has more than {max_keys} members")
            children: Any = value.values()
        else:
            children = value
        pending.extend(child for child in children if isinstance(child, dict | list))


def _too_complex(message: str) -> RequestRejected:
    return RequestRejected(message, code=ErrorCode.JSON_TOO_COMPLEX, field="body")


def json_or_none(data: bytes) -> Any:
    """`data` parsed as JSON, or None when it is empty or not JSON."""
    if not data:
        return None
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None


def is_text_media_type(media: str) -> bool:
    """Media types whose body is text: kept as text (the policy's text rules apply)."""
    return media.startswith("text/") or media in _TEXT_TYPES or media.endswith("+xml")


_TEXT_TYPES = frozenset({"application/xml", "application/yaml", "application/x-yaml"})


def binary_data(media: str, body: bytes, limits: LimitSettings | None = None) -> BinaryData:
    """`data` of a binary-mode event, typed by its media type: JSON parsed, text kept,
    anything else base64. Raises `RequestRejected` for JSON that does not parse.

    With no media type at all, a body that parses as JSON is JSON (what the CloudEvents
    SDKs send for structured data without a `datacontenttype`; docs/api.md); anything
    else without a type stays opaque: bytes that merely decode as UTF-8 need not be text."""
    if not body:
        return BinaryData(value=None, is_base64=False, size=0)
    if is_json_media_type(media):
        return json_data(parse_json(body, limits), body)
    if not media:
        document = json_or_none(body)
        if document is not None:
            return json_data(document, body)
    if is_text_media_type(media):
        try:
            text = body.decode()
        except UnicodeDecodeError:
            pass
        else:
            if "\x00" not in text:
                return BinaryData(value=text, is_base64=False, size=len(body))
    encoded = base64.b64encode(body).decode()
    return BinaryData(value=encoded, is_base64=True, size=len(encoded))


def json_data(document: Any, body: bytes) -> BinaryData:
    """`data` already parsed from `body`; refuses a NUL in any of its strings."""
    nul_path = find_nul(document, "data") if NUL_ESCAPE in body else None
    if nul_path is not None:
        raise RequestRejected(
            "strings must not contain the NUL character",
            code=ErrorCode.NUL_CHARACTER,
            field=nul_path,
        )
    return BinaryData(value=document, is_base64=False, size=len(body))


def structured(document: Any, body: bytes, transport: Transport) -> Candidate:
    """A structured-mode event parsed from `body`; validation walks it for a NUL only if
    the bytes hold the escape."""
    return Candidate(raw=document, transport=transport, may_hold_nul=NUL_ESCAPE in body)


def batch(body: bytes, limits: LimitSettings, transport: Transport) -> list[Candidate]:
    """A `application/cloudevents-batch+json` body (a JSON array of structured events) as
    its candidates, in order; each event is validated and answered on its own later.
    Raises `RequestRejected` when the body as a whole is unusable: not JSON, not an array,
    too complex, or more than `max_events_per_request` events."""
    document = parse_json(body, limits)
    if not isinstance(document, list):
        raise not_an_event(f"{BATCH} must hold a JSON array")
    return structured_items(document, body, limits, transport)


def structured_items(
    items: list[Any], body: bytes, limits: LimitSettings, transport: Transport
) -> list[Candidate]:
    """Structured events parsed from `body`, refused whole past `max_events_per_request`."""
    limit = limits.max_events_per_request
    if len(items) > limit:
        raise RequestRejected(
            f"{len(items)} events in one batch; the limit is {limit}",
            code=ErrorCode.TOO_MANY_EVENTS,
            field="body",
        )
    # Looked for once per body: if the bytes lack the escape, validation need not walk
    # every event looking for a NUL.
    may_hold_nul = NUL_ESCAPE in body
    return [Candidate(raw=item, transport=transport, may_hold_nul=may_hold_nul) for item in items]


def not_an_event(message: str) -> RequestRejected:
    return RequestRejected(message, code=ErrorCode.NOT_AN_EVENT, field="body")


def rejected_candidate(
    rejected: RequestRejected, attributes: dict[str, Any], transport: Transport
) -> Candidate:
    """A message that could not be decoded, as a candidate validation answers with its
    rejection; quarantined under the attributes it carried, so it can be found."""
    rejection = Rejection(code=rejected.code, field=rejected.field, message=rejected.message)
    return Candidate(raw=attributes, transport=transport, rejection=rejection)


def iso(moment: datetime) -> str:
    """A broker's timestamp as an RFC 3339 `time`; a naive one is taken as UTC."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.isoformat()
