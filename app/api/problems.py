"""Every error answer is an RFC 9457 problem document with Sluice's `code` and `field`.

Handlers are registered for our own errors and for what FastAPI/Starlette raise on their
own (unknown route, wrong method, bad query parameter), so no error leaves as a bare
`{"detail": ...}` and bad input never becomes a 500.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.errors import ErrorCode, Retryable, SluiceError

PROBLEM_JSON = "application/problem+json"

_HTTP_CODES = {404: ErrorCode.NOT_FOUND, 405: ErrorCode.METHOD_NOT_ALLOWED}


def problem(
    code: ErrorCode,
    message: str,
    *,
    field: str | None = None,
    status: int | None = None,
    retry_after_s: int | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    status = status or code.http_status
    body = {
        "type": f"urn:sluice:error:{code}",
        "title": code.value,
        "status": status,
        "code": code.value,
        "detail": message,
        "field": field,
    }
    headers = dict(headers or {})
    if retry_after_s is not None:
        headers["Retry-After"] = str(retry_after_s)
    return Response(
        orjson.dumps(body), status_code=status, media_type=PROBLEM_JSON, headers=headers
    )


def problem_for(error: SluiceError) -> Response:
    retry_after = error.retry_after_s if isinstance(error, Retryable) else None
    return problem(
        error.code,
        error.message,
        field=error.field,
        retry_after_s=retry_after,
        headers=error.headers,
    )


async def _sluice_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, SluiceError)  # noqa: S101 - registered for SluiceError only
    return problem_for(exc)


async def _validation_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)  # noqa: S101 - registered for it only
    first = exc.errors()[0] if exc.errors() else {}
    field = ".".join(str(part) for part in first.get("loc", ())[1:]) or None
    return problem(
        ErrorCode.INVALID_PARAMETER, str(first.get("msg", "invalid request")), field=field
    )


async def _http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)  # noqa: S101 - registered for it only
    code = _HTTP_CODES.get(exc.status_code, ErrorCode.INVALID_PARAMETER)
    # Keeps Starlette's headers: a 405 must say which methods are `Allow`ed (RFC 9110).
    return problem(code, str(exc.detail), status=exc.status_code, headers=exc.headers)


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(SluiceError, _sluice_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
