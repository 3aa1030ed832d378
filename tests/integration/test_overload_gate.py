"""The overload gate of a served process (`api/admission.py`): with the buffer full, or with
`SLUICE_LIMIT_MAX_REQUESTS_IN_FLIGHT` requests being taken, `POST /ingest` and the Pub/Sub
push route are refused at once with a problem document and `Retry-After`, before their body
is read; the access log summarises the refusals instead of a line each.

PostgreSQL is made to hold the writes (`LOCK TABLE events`), so the buffered events stay in
the buffer until the test lets them go; nothing is lost either way."""

from __future__ import annotations

import asyncio
import re
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import IO
from urllib.parse import urlsplit

import asyncpg
import httpx
import orjson

from tests.support import read_log, served

STRUCTURED = {"content-type": "application/cloudevents+json"}


def _event(source: str, number: int) -> bytes:
    return orjson.dumps({"specversion": "1.0", "id": str(number), "source": source, "type": "t"})


def _env(database_url: str, **extra: str) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "SLUICE_ENV": "test",
        "SLUICE_AUTH_INGEST": "open",
        "SLUICE_PUBSUB_ENABLED": "true",
        "SLUICE_BATCH_ACK_TIMEOUT_S": "30",  # the held writes must not time out
        "SLUICE_LIMIT_BODY_TIMEOUT_S": "10",
        **extra,
    }


@asynccontextmanager
async def _writes_held(database_url: str) -> AsyncIterator[None]:
    """Every batch write waits until the block ends (the lock's transaction then ends)."""
    locker = await asyncpg.connect(database_url)
    try:
        async with locker.transaction():
            await locker.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
            yield
    finally:
        await locker.close()


def _head_only(base_url: str, path: str) -> tuple[bytes, float]:
    """A POST whose headers promise a body that is never sent: the answer, and how long it
    took. A server that waited for the body would answer only at the body timeout."""
    address = urlsplit(base_url)
    request = (
        f"POST {path} HTTP/1.1\r\nHost: sluice\r\nContent-Type: application/cloudevents+json\r\n"
        "Content-Length: 5000\r\n\r\n"
    ).encode()
    started = time.monotonic()
    with socket.create_connection((address.hostname, address.port), timeout=15) as connection:
        connection.sendall(request)
        answer = b""
        while not _complete(answer) and (chunk := connection.recv(65536)):
            answer += chunk
    return answer, time.monotonic() - started


def _complete(answer: bytes) -> bool:
    head, separator, body = answer.partition(b"\r\n\r\n")
    length = re.search(rb"(?im)^content-length:\s*(\d+)\s*$", head)
    return bool(separator) and length is not None and len(body) >= int(length.group(1))


def _problem(answer: bytes, status: int, code: str) -> None:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 %d" % status), answer[:300]
    assert re.search(rb"(?im)^retry-after:\s*1\s*$", head), head
    assert re.search(rb"(?im)^content-type:\s*application/problem\+json\s*$", head), head
    problem = orjson.loads(body)
    assert problem["status"] == status
    assert problem["code"] == code
    assert problem["type"] == f"urn:sluice:error:{code}"
    assert "field" in problem


async def _eventually(condition: Callable[[], Awaitable[bool]], timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not await condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def _buffered(http: httpx.AsyncClient, events: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        health = (await http.get("/health")).json()
        return int(health["components"]["batcher"]["buffered_events"]) == events

    return check


def _log_lines(log: IO[bytes]) -> list[dict[str, object]]:
    lines = [line for line in read_log(log).splitlines() if line.startswith("{")]
    return [orjson.loads(line) for line in lines]


async def test_a_full_buffer_refuses_before_the_body_is_read(database_url: str) -> None:
    env = _env(
        database_url, SLUICE_BATCH_BUFFER_MAX_EVENTS="1", SLUICE_LIMIT_MAX_EVENTS_PER_REQUEST="1"
    )
    with tempfile.TemporaryFile() as log, served(env, log=log) as (base_url, _):
        async with httpx.AsyncClient(base_url=base_url, headers=STRUCTURED) as http:
            async with _writes_held(database_url):
                taken = await http.post("/ingest?ack=enqueued", content=_event("/gate/full", 1))
                assert taken.status_code == 202, taken.text
                await _eventually(_buffered(http, 1))  # held until the lock goes: full

                for path in ("/ingest", "/pubsub/push"):
                    answer, seconds = _head_only(base_url, path)
                    _problem(answer, 429, "transient.buffer_full")
                    assert seconds < 2, f"{path} waited {seconds:.1f} s for a body it must not read"
                whole = await http.post("/ingest", content=_event("/gate/full", 2))
                assert whole.status_code == 429
                assert whole.json() == {  # what `BufferFull` has always answered
                    "type": "urn:sluice:error:transient.buffer_full",
                    "title": "transient.buffer_full",
                    "status": 429,
                    "code": "transient.buffer_full",
                    "detail": "ingest buffer is full",
                    "field": None,
                }

            await _eventually(_buffered(http, 0))  # the held event committed
            after = await http.post("/ingest", content=_event("/gate/full", 3))
            assert after.status_code == 200, after.text
            metrics = (await http.get("/metrics")).text

            async def summarised() -> bool:
                return any(r["message"] == "requests refused" for r in _log_lines(log))

            await _eventually(summarised)
            records = _log_lines(log)

    assert re.search(r'sluice_buffer_refusals_total\{source="http"\} 2\.0', metrics), metrics
    assert re.search(r'sluice_buffer_refusals_total\{source="pubsub"\} 1\.0', metrics)
    assert re.search(
        r'sluice_http_requests_total\{method="POST",route="/ingest",status="429"\} 2\.0', metrics
    )
    summaries = [r for r in records if r["message"] == "requests refused"]
    by_route = {(r["route"], r["status"]): r["count"] for r in summaries}
    assert by_route == {("/ingest", 429): 2, ("/pubsub/push", 429): 1}
    refused_lines = [r for r in records if r["message"] == "request" and r["status"] == 429]
    assert refused_lines == [], "a refusal was logged one line each"


async def test_requests_beyond_the_in_flight_limit_get_503(database_url: str) -> None:
    env = _env(database_url, SLUICE_LIMIT_MAX_REQUESTS_IN_FLIGHT="1")
    with served(env) as (base_url, _):
        async with httpx.AsyncClient(base_url=base_url, headers=STRUCTURED, timeout=40) as http:
            async with _writes_held(database_url):
                first = asyncio.create_task(
                    http.post("/ingest", content=_event("/gate/in-flight", 1))
                )
                await _eventually(_buffered(http, 1))  # admitted, waiting for its commit
                answer, seconds = await asyncio.to_thread(_head_only, base_url, "/ingest")
                _problem(answer, 503, "transient.overloaded")
                assert seconds < 2
                assert not first.done(), "the admitted request was answered before its commit"
            answered = await first
            assert answered.status_code == 200, answered.text
            assert answered.json()["stored"] == 1
            # Its place is free again once it was answered.
            again = await http.post("/ingest", content=_event("/gate/in-flight", 2))
            assert again.status_code == 200, again.text
            metrics = (await http.get("/metrics")).text
    assert re.search(r'sluice_overload_refusals_total\{source="http"\} 1\.0', metrics), metrics
