"""Spans in-process, through the SDK's `InMemorySpanExporter` behind the same scrubbing
processor the exporters get: request → steps → flush (with links both ways) → asyncpg,
context from W3C `traceparent` and from the CloudEvents `traceparent` attribute."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from asgi_lifespan import LifespanManager
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from app.main import create_app
from app.observability import tracing
from app.pipeline.authorize import CheckSource
from app.pipeline.steps import Anonymize, Validate
from tests.conftest import SettingsFactory, running_app
from tests.support import make_event, unique_source

REMOTE_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
REMOTE_PARENT = "00f067aa0ba902b7"
EVENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
EVENT_PARENT = "b7ad6b7169203331"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(tracing.scrubbed(SimpleSpanProcessor(exporter)))
    tracing.install(provider)
    try:
        yield exporter
    finally:
        tracing.shutdown()


def _named(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [span for span in spans if span.name == name]


def _hex(trace_id: int) -> str:
    return trace.format_trace_id(trace_id)


async def test_request_steps_flush_and_database_spans(
    spans: InMemorySpanExporter, make_settings: SettingsFactory
) -> None:
    source = unique_source("trace")
    traced = make_event(source, "1", traceparent=f"00-{EVENT_TRACE}-{EVENT_PARENT}-01")
    async with running_app(make_settings(batch={"max_delay_ms": 50})) as client:
        first, second = await asyncio.gather(
            client.post(
                "/ingest",
                json=[traced, make_event(source, "2")],
                headers={"traceparent": f"00-{REMOTE_TRACE}-{REMOTE_PARENT}-01"},
            ),
            client.post("/ingest", json=make_event(source, "3")),
        )
    assert first.status_code == 200, first.text
    assert second.status_code == 200, second.text
    finished = spans.get_finished_spans()

    requests = _named(finished, "POST /ingest")
    assert len(requests) == 2
    continued = next(s for s in requests if _hex(s.context.trace_id) == REMOTE_TRACE)
    assert continued.parent is not None
    assert trace.format_span_id(continued.parent.span_id) == REMOTE_PARENT
    assert continued.attributes is not None
    assert continued.attributes["http.route"] == "/ingest"

    # The steps nest under the request: validate → anonymize → contract → buffer.
    chain = [continued]
    for name in ("sluice.validate", "sluice.anonymize", "sluice.contract", "sluice.buffer"):
        step = next(
            s
            for s in _named(finished, name)
            if s.parent and s.parent.span_id == chain[-1].context.span_id
        )
        chain.append(step)
    validate = chain[1]
    assert [_hex(link.context.trace_id) for link in validate.links] == [EVENT_TRACE]
    waits = _named(finished, "sluice.commit_wait")
    assert any(w.parent and w.parent.span_id == continued.context.span_id for w in waits)

    # The flush links to both requests (one batch: both came within max_delay), and each
    # request links back and names the flush's trace.
    flushes = _named(finished, "sluice.flush")
    assert flushes
    for request in requests:
        assert request.attributes is not None
        flush_trace = request.attributes["sluice.flush.trace_id"]
        flush = next(f for f in flushes if _hex(f.context.trace_id) == flush_trace)
        assert flush.parent is None  # a trace of its own
        assert request.context.span_id in {link.context.span_id for link in flush.links}
        assert flush.context.span_id in {link.context.span_id for link in request.links}
        database = [s for s in finished if s.parent and s.parent.span_id == flush.context.span_id]
        assert any(s.attributes and s.attributes.get("db.system") == "postgresql" for s in database)
        for span in database:
            assert span.attributes is not None
            assert "db.statement.parameters" not in span.attributes


async def test_tracing_off_wraps_nothing(make_settings: SettingsFactory) -> None:
    """With no provider, no step is wrapped: the hot path is the untraced one."""
    assert not tracing.enabled()
    app = create_app(make_settings())
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=60):
        head = app.state.services.pipeline._head
        assert isinstance(head, CheckSource)  # the key's source check comes first
        validate = head._next
        assert isinstance(validate, Validate)
        assert isinstance(validate._next, Anonymize)
    with tracing.flush_span([None], 1), tracing.span("commit_wait"):
        assert not trace.get_current_span().get_span_context().is_valid
