"""Admin endpoints for the data subject's rights: erasure, suppression, access.

Guarded by API keys (`app.api.security`): `admin:read` for reads, `admin:write` for
erasure and unsuppress; `SLUICE_ADMIN_TOKEN`, if set, still works as a key holding both.
Raw subject identifiers arrive here (over TLS, from the controller) and are turned into
pseudonyms at once; they are never logged (the access log records route templates, not
paths), stored, or echoed back.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from pydantic import AfterValidator, BaseModel, Field, StringConstraints

from app.api.dependencies import Services, ServicesDep
from app.api.problems import PROBLEM_JSON
from app.api.security import admin_key
from app.clock import utc_now
from app.errors import ErrorCode, RequestRejected
from app.observability import metrics
from app.storage.subjects import SubjectPseudonyms


def _storable(text: str) -> str:
    """Refuses what PostgreSQL text cannot hold (NUL) and what is not UTF-8 (a lone
    surrogate from a `\\udxxx` escape): 422 at the edge, not a failed transaction."""
    if "\x00" in text:
        raise ValueError("must not contain the NUL character")
    try:
        text.encode()
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return text


StorableText = Annotated[
    str, StringConstraints(min_length=1, max_length=1024), AfterValidator(_storable)
]
Subject = Annotated[
    str, StringConstraints(min_length=1, max_length=1024), AfterValidator(_storable)
]
Requester = Annotated[
    str, StringConstraints(min_length=1, max_length=200), AfterValidator(_storable)
]


_PROBLEM = {"description": "problem", "content": {PROBLEM_JSON: {}}}


def admin_router(tag: str) -> APIRouter:
    """A router under `/admin`, every route behind an admin-scoped key."""
    return APIRouter(
        prefix="/admin",
        tags=[tag],
        dependencies=[Depends(admin_key)],
        responses=dict.fromkeys((400, 401, 403, 422, 429, 503), _PROBLEM),
    )


router = admin_router("admin: data subjects")


class SubjectsRequest(BaseModel):
    subjects: list[Subject] = Field(min_length=1, max_length=1000)
    requester: Requester = Field(description="who asked: a person or ticket, for the audit")


class ErasedSubject(BaseModel):
    index: int
    subject_pseudonym: str
    events_deleted: int
    quarantine_deleted: int


class ErasureResponse(BaseModel):
    events_deleted: int
    quarantine_deleted: int
    subjects: list[ErasedSubject]


class UnsuppressResponse(BaseModel):
    suppression_entries_removed: int


class SubjectEventsResponse(BaseModel):
    subject_pseudonym: str
    suppressed: bool
    events: list[dict[str, Any]]
    next_cursor: str | None


def _pseudonyms(services: Services, subject: str) -> SubjectPseudonyms:
    keyring = services.keyring
    return SubjectPseudonyms(
        by_key=keyring.all_pseudonyms(subject), active_key_id=keyring.active_id
    )


@router.post("/subjects:erase", summary="Erase every stored row of the subjects; suppress them")
async def erase(body: SubjectsRequest, services: ServicesDep) -> ErasureResponse:
    subjects = [_pseudonyms(services, subject) for subject in body.subjects]
    counts = await services.subjects.erase(subjects, requester=body.requester, now=utc_now())
    metrics.ERASURES.inc(len(counts))
    return ErasureResponse(
        events_deleted=sum(c.events_deleted for c in counts),
        quarantine_deleted=sum(c.quarantine_deleted for c in counts),
        subjects=[
            ErasedSubject(
                index=index,
                subject_pseudonym=c.subject_pseudonym,
                events_deleted=c.events_deleted,
                quarantine_deleted=c.quarantine_deleted,
            )
            for index, c in enumerate(counts)
        ],
    )


@router.post("/subjects:unsuppress", summary="Let later events of the subjects be stored again")
async def unsuppress(body: SubjectsRequest, services: ServicesDep) -> UnsuppressResponse:
    subjects = [_pseudonyms(services, subject) for subject in body.subjects]
    removed = await services.subjects.unsuppress(subjects, requester=body.requester, now=utc_now())
    return UnsuppressResponse(suppression_entries_removed=removed)


@router.get("/subjects/{subject:path}/events", summary="What is stored for one subject (access)")
async def subject_events(
    services: ServicesDep,
    subject: Annotated[str, Path(min_length=1, max_length=1024)],
    cursor: Annotated[str | None, Query(max_length=4096)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> SubjectEventsResponse:
    pseudonyms = _pseudonyms(services, subject)
    try:
        page = await services.subjects.events_page(pseudonyms, cursor=cursor, limit=limit)
    except ValueError:
        raise RequestRejected(
            "cursor was not issued by this service",
            code=ErrorCode.INVALID_PARAMETER,
            field="cursor",
        ) from None
    return SubjectEventsResponse(
        subject_pseudonym=pseudonyms.active,
        suppressed=await services.subjects.is_suppressed(pseudonyms),
        events=page.events,
        next_cursor=page.next_cursor,
    )
