"""CloudEvents HTTP protocol binding 1.0: a request's headers and body → `Candidate`s.

Modes, chosen as the binding says:

- structured: `application/cloudevents+json` (one event);
- batched: `application/cloudevents-batch+json` (a JSON array);
- `application/json` with no `ce-specversion` header: an object is one event, an array a
  batch (what most producers send without thinking about CloudEvents modes);
- binary: any other request carrying `ce-specversion`; the `ce-*` headers are the
  attributes (percent-decoded) and the body is `data`, typed by `Content-Type`.

Pure: the caller has already read the body under its size limit. Request-level problems
raise `RequestRejected`; per-event problems are left to validation.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

import orjson

from app.config import LimitSettings
from app.errors import ErrorCode, RequestRejected
from app.pipeline.events import BinaryData, Candidate, Transport
from app.pipeline.validate import find_nul

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
JSON = "application/json"
NUL_ESCAPE = b"\\u0000"


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def is_json_media_type(media: str) -> bool:
    return media == JSON or media.endswith("+json")


def decode_request(
    headers: Mapping[str, str],
    body: bytes,
    limits: LimitSettings,
    *,
    transport: Transport = Transport.HTTP,
) -> list[Candidate]:
    media = media_type(headers.get("content-type"))
    if media in (STRUCTURED, BATCH) or ("ce-specversion" not in headers and media == JSON):
        return _decode_structured(media, body, limits, transport)
    if "ce-specversion" in headers:
        return [_decode_binary(headers, media, body, transport)]
    raise RequestRejected(
        f"Content-Type must be {STRUCTURED}, {BATCH} or {JSON}, "
        "or the request must carry ce-* headers (binary mode)",
        code=ErrorCode.UNSUPPORTED_MEDIA_TYPE,
        field="content-type",
    )


def parse_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RequestRejected(
            f"body is not valid JSON: {exc.msg} at position {exc.pos}",
            code=ErrorCode.MALFORMED_JSON,
            field="body",
        ) from None


def _decode_structured(
    media: str, body: bytes, limits: LimitSettings, transport: Transport
) -> list[Candidate]:
    document = parse_json(body)
    if media == STRUCTURED and not isinstance(document, dict):
        raise _not_an_event(f"{STRUCTURED} must hold one JSON object")
    if media == BATCH and not isinstance(document, list):
        raise _not_an_event(f"{BATCH} must hold a JSON array")
    if not isinstance(document, dict | list):
        raise _not_an_event("the body must be a JSON object (one event) or array (a batch)")
    items = document if isinstance(document, list) else [document]
    if len(items) > limits.max_events_per_request:
        raise RequestRejected(
            f"{len(items)} events in one request; the limit is {limits.max_events_per_request}",
            code=ErrorCode.TOO_MANY_EVENTS,
            field="body",
        )
    # A NUL can only be in a JSON string as the escape \u0000: if the bytes lack it,
    # validation need not walk every event looking for one.
    may_hold_nul = NUL_ESCAPE in body
    return [Candidate(raw=item, transport=transport, may_hold_nul=may_hold_nul) for item in items]


def _decode_binary(
    headers: Mapping[str, str], media: str, body: bytes, transport: Transport
) -> Candidate:
    attributes: dict[str, Any] = {
        name.removeprefix("ce-"): unquote(value)
        for name, value in headers.items()
        if name.startswith("ce-")
    }
    if media:
        attributes["datacontenttype"] = headers["content-type"]
    return Candidate(raw=attributes, transport=transport, binary_data=binary_data(media, body))


def binary_data(media: str, body: bytes) -> BinaryData:
    """`data` of a binary-mode event, typed by its media type: JSON parsed, text kept,
    anything else base64. Raises `RequestRejected` for JSON that does not parse."""
    if not body:
        return BinaryData(value=None, is_base64=False, size=0)
    if is_json_media_type(media):
        return json_data(parse_json(body), body)
    if media.startswith("text/"):
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


def _not_an_event(message: str) -> RequestRejected:
    return RequestRejected(message, code=ErrorCode.NOT_AN_EVENT, field="body")
