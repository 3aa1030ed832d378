"""Hostile input at the edge of a served process (uvicorn, as `python -m app serve`):
JSON nesting and width are bounded, oversized headers (bytes or count) are refused with 431, and
a body trickled a byte at a time gets 408 when `SLUICE_LIMIT_BODY_TIMEOUT_S` runs out."""

from __future__ import annotations

import re
import select
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import orjson
import pytest

from tests.support import served


@pytest.fixture(scope="module")
def service(database_url: str) -> Iterator[str]:
    env = {
        "DATABASE_URL": database_url,
        "SLUICE_ENV": "test",
        "SLUICE_LIMIT_BODY_TIMEOUT_S": "2",
        "SLUICE_AUTH_INGEST": "open",
    }
    with served(env) as (base_url, _):
        yield base_url


def _event(data: bytes) -> bytes:
    return b'{"specversion":"1.0","id":"1","source":"/limits","type":"t","data":' + data + b"}"


def _deep(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (_event(_deep(300)), 422, "envelope.invalid_attribute"),  # past the 254 orjson writes
        (_event(orjson.dumps({f"k{i}": i for i in range(1001)})), 422, "request.json_too_complex"),
        (_event(_deep(5000)), 400, "request.malformed_json"),  # past orjson's parse limit
    ],
    ids=["deep", "wide", "very-deep"],
)
def test_json_bounds(service: str, body: bytes, status: int, code: str) -> None:
    response = httpx.post(
        f"{service}/ingest", content=body, headers={"content-type": "application/cloudevents+json"}
    )
    assert response.status_code == status, response.text
    answer = response.json()
    assert (answer["results"][0] if "results" in answer else answer)["code"] == code


def _raw(service: str, request: bytes, *, trickle: bytes = b"", every_s: float = 0.0) -> bytes:
    """Send `request`, then `trickle` one byte per `every_s`; what the server answered."""
    address = urlsplit(service)
    with socket.create_connection((address.hostname, address.port), timeout=15) as connection:
        connection.sendall(request)
        for byte in trickle:
            if select.select([connection], [], [], every_s)[0]:
                break  # the server answered (or closed) before the body was complete
            connection.sendall(bytes([byte]))
        answer = b""
        while not _complete(answer) and (chunk := connection.recv(65536)):
            answer += chunk
        return answer


def _complete(answer: bytes) -> bool:
    """Whether `answer` holds a whole response: its head and `content-length` bytes of body
    (the head and the body may arrive in separate segments, so a head alone is not enough)."""
    head, separator, body = answer.partition(b"\r\n\r\n")
    if not separator:
        return False
    length = re.search(rb"(?im)^content-length:\s*(\d+)\s*$", head)
    return length is not None and len(body) >= int(length.group(1))


def test_oversized_headers_are_refused(service: str) -> None:
    huge = b"x" * (128 * 1024)
    answer = _raw(
        service,
        b"GET /health/live HTTP/1.1\r\nHost: sluice\r\nX-Big: " + huge + b"\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    assert b"request.headers_too_large" in answer
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(150))
    answer = _raw(service, b"GET /health/live HTTP/1.1\r\nHost: sluice\r\n" + many + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]


def test_a_trickled_body_times_out_with_408(service: str) -> None:
    body = orjson.dumps({"specversion": "1.0", "id": "1", "source": "/slow", "type": "t"})
    head = (
        b"POST /ingest HTTP/1.1\r\nHost: sluice\r\n"
        b"Content-Type: application/cloudevents+json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    started = time.monotonic()
    answer = _raw(service, head, trickle=body, every_s=0.25)  # ~13 s in full
    elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"request.timeout" in answer
    assert elapsed < 8
