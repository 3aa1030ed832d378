"""Request headers bounded before any route runs: `431 request.headers_too_large`.

uvicorn's default parser (httptools) takes headers of any size, and gunicorn's
`limit_request_*` settings apply only to its own parser, not to uvicorn workers; so the
bound is enforced here, in a pure ASGI middleware that costs one pass over the header
list. It bounds what the application works on; the bytes a client may make the server
buffer before the application sees them are bounded by the proxy in front
(docs/security.md, *HTTP limits*).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.problems import problem
from app.config import LimitSettings
from app.errors import ErrorCode


class HeaderLimits:
    def __init__(self, app: ASGIApp, limits: LimitSettings) -> None:
        self._app = app
        self._max_bytes = limits.max_header_bytes
        self._max_count = limits.max_headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = scope["headers"]
            size = sum(len(name) + len(value) for name, value in headers)
            if size > self._max_bytes or len(headers) > self._max_count:
                answer = problem(
                    ErrorCode.HEADERS_TOO_LARGE,
                    f"request headers exceed {self._max_bytes} bytes or {self._max_count} fields",
                    field="headers",
                )
                await answer(scope, receive, send)
                return
        await self._app(scope, receive, send)
