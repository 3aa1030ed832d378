"""Reading a request body under a byte limit, enforced while it arrives.

The declared `Content-Length` is checked before reading; a chunked or lying body is cut
off as soon as it passes the limit, so a client cannot make the service buffer more than
`max_bytes` (plus one chunk) of it. The whole body must arrive within `timeout_s`: a
client trickling it (a byte a second) gets `408` instead of holding a connection and its
buffer for as long as it likes; uvicorn itself bounds only idle keep-alive connections.
"""

from __future__ import annotations

import asyncio

from fastapi import Request

from app.errors import ErrorCode, RequestRejected


def _too_large(max_bytes: int) -> RequestRejected:
    return RequestRejected(
        f"request body exceeds {max_bytes} bytes", code=ErrorCode.BODY_TOO_LARGE, field="body"
    )


async def read_limited_body(request: Request, max_bytes: int, *, timeout_s: float) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes)
    try:
        async with asyncio.timeout(timeout_s):
            return await _read(request, max_bytes)
    except TimeoutError:
        raise RequestRejected(
            f"request body did not arrive within {timeout_s:g} s",
            code=ErrorCode.REQUEST_TIMEOUT,
            field="body",
        ) from None


async def _read(request: Request, max_bytes: int) -> bytes:
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > max_bytes:
            raise _too_large(max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)
