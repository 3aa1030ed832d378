"""CloudEvents HTTP protocol binding 1.0: a request's headers and body → `Candidate`s.

Modes, chosen as the binding says:

- structured: `application/cloudevents+json` (one event);
- batched: `application/cloudevents-batch+json` (a JSON array);
- `application/json` with no `ce-specversion` header: an object is one event, an array a
  batch (what most producers send without thinking about CloudEvents modes);
- binary: any other request carrying `ce-specversion`; the `ce-*` headers are the
  attributes (percent-decoded) and the body is `data`, typed by `Content-Type`.

`HttpDecoder` is the source's `Decoder`. Pure: the caller has already read the body
under its size limit. Request-level problems raise `RequestRejected`; per-event problems
are left to validation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from app.config import LimitSettings
from app.errors import ErrorCode, RequestRejected
from app.model.events import Candidate, Transport
from app.sources.cloudevents import (
    BATCH,
    JSON,
    STRUCTURED,
    batch,
    binary_data,
    media_type,
    not_an_event,
    parse_json,
    structured_items,
)


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """What decoding reads of a request: lower-case header names, the whole body."""

    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class HttpDecoder:
    limits: LimitSettings
    transport: Transport = Transport.HTTP

    def decode(self, message: HttpRequest) -> list[Candidate]:
        headers, body = message.headers, message.body
        media = media_type(headers.get("content-type"))
        if media in (STRUCTURED, BATCH) or ("ce-specversion" not in headers and media == JSON):
            return self._structured(media, body)
        if "ce-specversion" in headers:
            return [self._binary(headers, media, body)]
        raise RequestRejected(
            f"Content-Type must be {STRUCTURED}, {BATCH} or {JSON}, "
            "or the request must carry ce-* headers (binary mode)",
            code=ErrorCode.UNSUPPORTED_MEDIA_TYPE,
            field="content-type",
        )

    def _structured(self, media: str, body: bytes) -> list[Candidate]:
        if media == BATCH:
            return batch(body, self.limits, self.transport)
        document = parse_json(body, self.limits)
        if media == STRUCTURED and not isinstance(document, dict):
            raise not_an_event(f"{STRUCTURED} must hold one JSON object")
        if not isinstance(document, dict | list):
            raise not_an_event("the body must be a JSON object (one event) or array (a batch)")
        items = document if isinstance(document, list) else [document]
        return structured_items(items, body, self.limits, self.transport)

    def _binary(self, headers: Mapping[str, str], media: str, body: bytes) -> Candidate:
        attributes: dict[str, Any] = {
            name.removeprefix("ce-"): unquote(value)
            for name, value in headers.items()
            if name.startswith("ce-")
        }
        if media:
            attributes["datacontenttype"] = headers["content-type"]
        return Candidate(
            raw=attributes,
            transport=self.transport,
            binary_data=binary_data(media, body, self.limits),
        )
