"""`python -m bench.inprocess`: the service's own CPU per event on the HTTP path, without
uvicorn, the network or a load generator in the figure.

The app is built as `serve` builds it (default policy, the bench's contract), on a scratch
database, and `POST /ingest` is called as an ASGI application by concurrent in-process
clients; the figure is this process's CPU time (the app, asyncpg's client side, the tiny
ASGI driver) per committed event, at log level WARNING unless `SLUICE_LOG_LEVEL` says
otherwise (the access log's line is then not in it). PostgreSQL's CPU is not in it.
Steadier than the full
bench on a shared machine, and what a profiler should be pointed at
(`py-spy record -f raw -- python -m bench.inprocess`).

`python -m bench.inprocess --stages` times each pure stage (decode, validate, anonymize,
contract, and the whole way through to a sink that writes nothing) per event.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import timeit
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from bench import database
from bench.events import batch_body, client_source
from bench.server import CONTRACTS_DIR

_BATCH_MEDIA = b"application/cloudevents-batch+json"


async def _post(app: Any, body: bytes) -> int:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/ingest",
        "raw_path": b"/ingest",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"content-type", _BATCH_MEDIA),
            (b"content-length", str(len(body)).encode()),
            (b"host", b"bench"),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client never disconnects
        raise AssertionError("unreachable")

    statuses: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await app(scope, receive, send)
    return statuses[0]


async def _measure(url: str, clients: int, batch: int, requests: int) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("SLUICE_CONTRACTS_DIR", str(CONTRACTS_DIR))
    from app.main import create_app_from_environment  # noqa: PLC0415 - after the env is set

    app = create_app_from_environment()
    tag = uuid.uuid4().hex[:6]
    async with app.router.lifespan_context(app):
        sent = 0

        async def client(number: int) -> Counter[int]:
            nonlocal sent
            source, first, statuses = client_source(tag, 0, number), 0, Counter[int]()
            while sent < requests:
                sent += 1
                statuses[await _post(app, batch_body(source, first, batch))] += 1
                first += batch
            return statuses

        await asyncio.gather(*(client(c) for c in range(4)))  # warm-up: one round
        sent = 0
        wall, cpu = time.perf_counter(), time.process_time()
        tallies = await asyncio.gather(*(client(100 + c) for c in range(clients)))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    statuses = sum(tallies, Counter[int]())
    events = requests * batch
    print(
        f"in-process  {clients} clients, {batch}-event requests: "
        f"{cpu * 1e6 / events:.1f} µs CPU per event, {cpu * 1e6 / requests:.0f} per request, "
        f"{events / wall:,.0f} events/s; statuses {dict(statuses)}"
    )


def _stages(batch: int) -> None:
    os.environ.setdefault("SLUICE_CONTRACTS_DIR", str(CONTRACTS_DIR))
    from app import main  # noqa: PLC0415
    from app.api.ingest import render_report  # noqa: PLC0415
    from app.config import Settings  # noqa: PLC0415
    from app.model.events import CloudEvent, Transport  # noqa: PLC0415
    from app.pipeline.message import AckMode, Message  # noqa: PLC0415
    from app.sources.http import HttpDecoder, HttpRequest  # noqa: PLC0415
    from app.sources.validate import validate_candidate  # noqa: PLC0415

    settings = Settings()
    _, anonymizer, checker = main._rules(settings)  # the policy and contracts as the app loads them
    request = HttpRequest(
        {"content-type": _BATCH_MEDIA.decode()}, batch_body("/bench/stages", 0, batch)
    )
    decoder = HttpDecoder(settings.limits)
    candidates = decoder.decode(request)
    events = [validate_candidate(c, settings.limits) for c in candidates]
    valid = [e for e in events if isinstance(e, CloudEvent)]
    anonymized = [anonymizer.anonymize(e) for e in valid]
    now = datetime.now(UTC)

    class Discard:
        async def submit(self, message: Message[Any]) -> None:
            message.ticket.taken()
            message.ticket.settle_enqueued(message.positions)

    pipeline = main.build_pipeline(settings, anonymizer, checker, Discard())
    loop = asyncio.new_event_loop()

    async def whole() -> None:
        report = await pipeline.ingest(
            decoder.decode(request), transport=Transport.HTTP, ack=AckMode.ENQUEUED
        )
        render_report(report)

    stages: dict[str, Callable[[], object]] = {
        "decode": lambda: decoder.decode(request),
        "validate": lambda: [validate_candidate(c, settings.limits) for c in candidates],
        "anonymize": lambda: [anonymizer.anonymize(e) for e in valid],
        "contract": lambda: [checker.check(e, now) for e in anonymized],
        "decode → render, no I/O": lambda: loop.run_until_complete(whole()),
    }
    for name, stage in stages.items():
        best = min(timeit.repeat(stage, number=100, repeat=5, timer=time.process_time))
        print(f"{name:26s} {best / 100 / batch * 1e6:6.2f} µs per event")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.inprocess", description=__doc__)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--batch", type=int, default=50, help="events per request")
    parser.add_argument("--requests", type=int, default=1200, help="measured requests")
    parser.add_argument("--stages", action="store_true", help="time each pure stage instead")
    args = parser.parse_args()
    os.environ.setdefault("SLUICE_LOG_LEVEL", "WARNING")
    if args.stages:
        _stages(args.batch)
        return
    admin, _ = database.admin_url()
    with database.scratch_database(admin) as url:
        asyncio.run(_measure(url, args.clients, args.batch, args.requests))


if __name__ == "__main__":
    main()
