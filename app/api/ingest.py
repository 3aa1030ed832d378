"""`POST /ingest`: the HTTP edge. Reads, decodes, hands over, maps the answer to a status.

Status: 200 when no event was rejected (`quarantined` is not a rejection: the event is
kept for replay); 207 when some were; 422 when every event was; 202 with `?ack=enqueued`
(or `Prefer: respond-async`), and always in broker-backed mode (`SLUICE_HTTP_ACK=broker`:
after RabbitMQ confirmed the anonymized events); 400/408/413/415/422 for an unusable
request; 401 without a valid key when ingest needs one; an event whose `source` the key
may not write is rejected as `auth.source_not_allowed` (207), and 403 if every event was;
429/503 with `Retry-After` when the events cannot be taken now. A 2xx other
than 202 is sent only after every event it reports as stored or duplicate is committed.
"""

from __future__ import annotations

from typing import Any, Literal

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from app.api.body import read_limited_body
from app.api.dependencies import Services
from app.api.problems import PROBLEM_JSON
from app.api.security import INGEST_SECURITY, ingest_key
from app.config import HttpAck
from app.errors import ErrorCode, InvalidInput
from app.model.events import Transport
from app.model.outcomes import EventResult, IngestReport, Outcome
from app.pipeline.message import AckMode
from app.sources.cloudevents import BATCH, JSON, STRUCTURED
from app.sources.http import HttpDecoder, HttpRequest

router = APIRouter(tags=["ingest"])


class ViolationModel(BaseModel):
    code: str
    field: str
    keyword: str | None = None


class EventResultModel(BaseModel):
    index: int
    status: Literal["stored", "duplicate", "rejected", "accepted", "suppressed", "quarantined"]
    id: str | None = None
    source: str | None = None
    code: str | None = None
    field: str | None = None
    message: str | None = None
    # Every failed contract or quality check: why it was rejected or, in lenient mode,
    # what was dropped from the stored event.
    violations: list[ViolationModel] | None = None
    # Taken without its payload: `dropped`, with why and the policy rule that decided.
    data: Literal["dropped"] | None = None
    data_reason: Literal["opaque", "too_deep"] | None = None
    data_rule: str | None = None


class IngestResponseModel(BaseModel):
    stored: int
    duplicate: int
    rejected: int
    accepted: int
    suppressed: int
    quarantined: int
    results: list[EventResultModel]


class ProblemModel(BaseModel):
    type: str
    title: str
    status: int
    code: str
    detail: str
    field: str | None = None


_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["specversion", "id", "source", "type"],
    "properties": {
        "specversion": {"type": "string", "enum": ["1.0"]},
        "id": {"type": "string", "minLength": 1},
        "source": {"type": "string", "minLength": 1},
        "type": {"type": "string", "minLength": 1},
        # Optional attributes may be `null`, which the JSON event format reads as absent.
        "time": {"type": ["string", "null"], "format": "date-time"},
        "subject": {"type": ["string", "null"], "minLength": 1},
        "datacontenttype": {"type": ["string", "null"], "minLength": 1},
        "dataschema": {"type": ["string", "null"], "minLength": 1},
        "data": {},
    },
    "additionalProperties": True,
}
_PROBLEM = {
    "description": "problem",
    "content": {PROBLEM_JSON: {"schema": ProblemModel.model_json_schema()}},
}
# `POST /ingest` reads its query and headers itself (see `ingest`); they are declared
# here as FastAPI would have declared them.
_PARAMETERS = [
    {
        "name": "ack",
        "in": "query",
        "required": False,
        "schema": {
            "type": "string",
            "enum": [mode.value for mode in AckMode],
            "default": "committed",
        },
        "description": "`enqueued`: answer 202 once buffered",
    },
    {
        "name": "prefer",
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": "`respond-async`: answer 202 once buffered, as `?ack=enqueued`",
    },
]
_REQUEST_BODY = {
    "required": True,
    "content": {
        STRUCTURED: {"schema": _EVENT_SCHEMA},
        BATCH: {"schema": {"type": "array", "items": _EVENT_SCHEMA}},
        JSON: {"schema": {"oneOf": [_EVENT_SCHEMA, {"type": "array", "items": _EVENT_SCHEMA}]}},
    },
}


@router.post(  # declares the operation for OpenAPI; `SERVED_ROUTE` below answers it
    "/ingest",
    summary="Ingest CloudEvents (structured, batched or binary mode)",
    response_model=IngestResponseModel,
    responses={
        202: {"model": IngestResponseModel, "description": "buffered, not yet committed"},
        207: {"model": IngestResponseModel, "description": "some events were rejected"},
        400: _PROBLEM,
        413: _PROBLEM,
        401: _PROBLEM,
        403: {"description": "every event's source is one the key may not write"},
        408: _PROBLEM,
        415: _PROBLEM,
        422: {"description": "every event was rejected, or the request is unusable"},
        429: _PROBLEM,
        503: _PROBLEM,
    },
    openapi_extra={
        "requestBody": _REQUEST_BODY,
        "parameters": _PARAMETERS,
        "security": INGEST_SECURITY,
    },
)
async def ingest(request: Request) -> Response:
    # Only `Request`, no dependencies: FastAPI's dependency solving (services, key, two
    # parameters) cost a sixth of the CPU of a one-event request.
    services: Services = request.app.state.services
    key = ingest_key(services, request.headers)
    ack = _ack_mode(request.query_params.get("ack"))
    prefer = request.headers.get("prefer")
    broker_mode = services.settings.http_ack is HttpAck.BROKER
    # A full buffer was refused before this ran, by the gate (`api/admission.py`).
    limits = services.settings.limits
    body = await read_limited_body(request, limits.max_body_bytes, timeout_s=limits.body_timeout_s)
    candidates = HttpDecoder(limits).decode(HttpRequest(request.headers, body))
    if broker_mode or (
        prefer is not None and "respond-async" in prefer.lower()
    ):  # 202 once RabbitMQ confirmed
        ack = AckMode.ENQUEUED
    report = await services.pipeline.ingest(
        candidates, transport=Transport.HTTP, ack=ack, sources=key.sources if key else None
    )
    return Response(
        orjson.dumps(render_report(report)),
        status_code=status_for(report, ack),
        media_type="application/json",
    )


class _ServedRoute(Route):
    """A Starlette route that names itself in the scope as FastAPI's routes do: the access
    log, the metrics and the tracing read the route template from `scope["route"]`."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = self
        await super().handle(scope, receive, send)


#: What answers `POST /ingest`: `app.main` puts it first among the app's own routes. A plain
#: Starlette route: FastAPI's handling around an endpoint (a request-scoped exit stack for
#: dependencies with `yield`, dependency solving, response checks) was a twelfth of a
#: one-event request's CPU, and this endpoint uses none of it. Being matched first, the
#: operation declared on `router` documents `POST /ingest` and is never called for it.
SERVED_ROUTE = _ServedRoute("/ingest", ingest, methods=["POST"], name="ingest")


def _ack_mode(value: str | None) -> AckMode:
    if value is None:
        return AckMode.COMMITTED
    try:
        return AckMode(value)
    except ValueError:
        raise InvalidInput(
            f"ack must be one of {', '.join(mode.value for mode in AckMode)}",
            code=ErrorCode.INVALID_PARAMETER,
            field="ack",
        ) from None


def status_for(report: IngestReport, ack: AckMode) -> int:
    rejected = report.count(Outcome.REJECTED)
    if report.results and rejected == len(report.results):
        return 403 if _all_forbidden(report) else 422
    if ack is AckMode.ENQUEUED:
        return 202
    return 207 if rejected else 200


def _all_forbidden(report: IngestReport) -> bool:
    return all(
        r.rejection is not None and r.rejection.code is ErrorCode.SOURCE_NOT_ALLOWED
        for r in report.results
    )


def render_report(report: IngestReport) -> dict[str, Any]:
    return {
        "stored": report.count(Outcome.STORED),
        "duplicate": report.count(Outcome.DUPLICATE),
        "rejected": report.count(Outcome.REJECTED),
        "accepted": report.count(Outcome.ACCEPTED),
        "suppressed": report.count(Outcome.SUPPRESSED),
        "quarantined": report.count(Outcome.QUARANTINED),
        "results": [_render_result(index, result) for index, result in enumerate(report.results)],
    }


def _render_result(index: int, result: EventResult) -> dict[str, Any]:
    rendered: dict[str, Any] = {
        "index": index,
        "status": result.status.value,
        "id": result.id,
        "source": result.source,
    }
    if result.rejection is not None:
        rendered["code"] = result.rejection.code.value
        rendered["field"] = result.rejection.field
        rendered["message"] = result.rejection.message
    elif result.status is Outcome.SUPPRESSED:
        rendered["code"] = ErrorCode.SUPPRESSED.value
    if result.violations:
        rendered["violations"] = [violation.as_dict() for violation in result.violations]
    if result.dropped is not None:
        rendered["data"] = "dropped"
        rendered["data_reason"] = result.dropped.reason.value
        rendered["data_rule"] = result.dropped.rule
    return rendered
