"""Spans in-process, through the SDK's `InMemorySpanExporter` behind the same scrubbing
processor the exporters get: request → steps → flush (with links both ways) → asyncpg,
context from W3C `traceparent` and from the CloudEvents `traceparent` attribute."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Iterator, Sequence

import pytest
from asgi_lifespan import LifespanManager
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Sampler, SamplingResult
from opentelemetry.util.types import Attributes

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


# --- sampling: an unsampled request costs no span; a sampled one keeps the whole tree -----


class _Asked(Sampler):
    """`inner`, noting the name of every span it is asked about: every span the SDK starts
    is asked, so an empty list means no span was made, not only none exported."""

    def __init__(self, inner: Sampler) -> None:
        self.inner = inner
        self.names: list[str] = []

    def should_sample(  # noqa: PLR0917 - the SDK's `Sampler` signature
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: trace.SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[trace.Link] | None = None,
        trace_state: trace.TraceState | None = None,
    ) -> SamplingResult:
        self.names.append(name)
        return self.inner.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return self.inner.get_description()


@dataclasses.dataclass
class Sampled:
    exported: InMemorySpanExporter
    asked: _Asked


@contextlib.contextmanager
def _production_sampler(ratio: str) -> Iterator[Sampled]:
    """The sampler `configure_from_environment` builds (`tracing.sampler()`) at `ratio`."""
    with pytest.MonkeyPatch.context() as env:
        env.delenv("OTEL_TRACES_SAMPLER", raising=False)
        env.setenv("OTEL_TRACES_SAMPLER_ARG", ratio)
        sampled = Sampled(InMemorySpanExporter(), _Asked(tracing.sampler()))
    provider = TracerProvider(sampler=sampled.asked)
    provider.add_span_processor(tracing.scrubbed(SimpleSpanProcessor(sampled.exported)))
    tracing.install(provider)
    try:
        yield sampled
    finally:
        tracing.shutdown()


@pytest.fixture
def ratio_zero() -> Iterator[Sampled]:
    """Ratio 0: no trace starting here is sampled; a caller's sampled one is followed."""
    with _production_sampler("0") as sampled:
        yield sampled


@pytest.fixture
def ratio_one() -> Iterator[Sampled]:
    """Ratio 1: every trace starting here is sampled, by the head decision."""
    with _production_sampler("1") as sampled:
        yield sampled


async def test_an_unsampled_request_makes_no_span(
    ratio_zero: Sampled, make_settings: SettingsFactory
) -> None:
    """Neither a request the ratio declines nor one whose caller did not sample it makes a
    request, step, flush or database span (not even a non-recording one): the sampler is
    asked once per request, by the head decision. The events are stored all the same."""
    source = unique_source("unsampled")
    traced = make_event(source, "1", traceparent=f"00-{EVENT_TRACE}-{EVENT_PARENT}-01")
    async with running_app(make_settings(batch={"max_delay_ms": 50})) as client:
        await asyncio.sleep(0.2)  # the lifespan's own start-up queries are done
        ratio_zero.asked.names.clear()
        responses = await asyncio.gather(
            client.post("/ingest", json=[traced, make_event(source, "2")]),
            client.post(
                "/ingest",
                json=make_event(source, "3"),
                headers={"traceparent": f"00-{REMOTE_TRACE}-{REMOTE_PARENT}-00"},
            ),
        )
        asked = list(ratio_zero.asked.names)  # before the shutdown's own writes
    assert [r.status_code for r in responses] == [200, 200], [r.text for r in responses]
    assert [r.json()["results"][0]["status"] for r in responses] == ["stored", "stored"]
    assert asked == ["request", "request"]
    assert ratio_zero.exported.get_finished_spans() == ()


async def test_a_sampled_request_keeps_the_whole_tree(
    ratio_zero: Sampled, make_settings: SettingsFactory
) -> None:
    """A caller's sampled `traceparent` is followed at ratio 0: request → steps → flush
    (sampled by its link, although the flush starts a trace of its own) → asyncpg. The
    unsampled request of the same batch adds nothing, and the flush links only the
    sampled one."""
    source = unique_source("sampled")
    async with running_app(make_settings(batch={"max_delay_ms": 50})) as client:
        sampled, unsampled = await asyncio.gather(
            client.post(
                "/ingest",
                json=[make_event(source, "1"), make_event(source, "2")],
                headers={"traceparent": f"00-{REMOTE_TRACE}-{REMOTE_PARENT}-01"},
            ),
            client.post("/ingest", json=make_event(source, "3")),
        )
    assert (sampled.status_code, unsampled.status_code) == (200, 200)
    finished = ratio_zero.exported.get_finished_spans()

    [request] = _named(finished, "POST /ingest")
    assert _hex(request.context.trace_id) == REMOTE_TRACE
    parent = request
    for name in ("sluice.validate", "sluice.anonymize", "sluice.contract", "sluice.buffer"):
        [step] = _named(finished, name)
        assert step.parent is not None
        assert step.parent.span_id == parent.context.span_id, name
        parent = step
    [wait] = _named(finished, "sluice.commit_wait")
    assert wait.parent is not None
    assert wait.parent.span_id == request.context.span_id

    assert request.attributes is not None
    [flush] = [
        f
        for f in _named(finished, "sluice.flush")
        if _hex(f.context.trace_id) == request.attributes["sluice.flush.trace_id"]
    ]
    assert flush.parent is None
    assert [link.context.span_id for link in flush.links] == [request.context.span_id]
    assert flush.attributes is not None
    assert flush.attributes["sluice.batch.requests"] == 1
    database = [s for s in finished if s.parent and s.parent.span_id == flush.context.span_id]
    assert any(s.attributes and s.attributes.get("db.system") == "postgresql" for s in database)
    # Nothing else: the unsampled request left no span, and no database span is a root.
    assert all(
        span.context.trace_id in {request.context.trace_id, flush.context.trace_id}
        for span in finished
    )


async def test_a_request_the_ratio_picks_is_a_root_with_its_tree(
    ratio_one: Sampled, make_settings: SettingsFactory
) -> None:
    """A request without `traceparent` that the ratio picks is sampled once, by the head
    decision: its span is a root, and its steps and flush follow."""
    async with running_app(make_settings()) as client:
        response = await client.post("/ingest", json=make_event(unique_source("picked"), "1"))
    assert response.status_code == 200, response.text
    finished = ratio_one.exported.get_finished_spans()
    [request] = _named(finished, "POST /ingest")
    assert request.parent is None
    [validate] = _named(finished, "sluice.validate")
    assert validate.parent is not None
    assert validate.parent.span_id == request.context.span_id
    assert request.attributes is not None
    flush_trace = request.attributes["sluice.flush.trace_id"]
    assert any(_hex(f.context.trace_id) == flush_trace for f in _named(finished, "sluice.flush"))


def test_default_sampler_is_one_percent_parent_based(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_TRACES_SAMPLER", raising=False)
    monkeypatch.delenv("OTEL_TRACES_SAMPLER_ARG", raising=False)
    description = tracing.sampler().get_description()
    assert "ParentBased" in description
    assert "TraceIdRatioBased{0.01}" in description
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.25")
    assert "TraceIdRatioBased{0.25}" in tracing.sampler().get_description()
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "often")
    with pytest.raises(RuntimeError, match="OTEL_TRACES_SAMPLER_ARG"):
        tracing.sampler()


@pytest.mark.parametrize(
    ("name", "arg", "expected"),
    [
        ("always_on", "", "AlwaysOnSampler"),
        ("parentbased_always_on", "", "ParentBased{root:AlwaysOnSampler"),
        ("traceidratio", "0.5", "TraceIdRatioBased{0.5}"),
        ("always_off", "", "AlwaysOffSampler"),
    ],
)
def test_an_explicit_sampler_is_honoured(
    monkeypatch: pytest.MonkeyPatch, name: str, arg: str, expected: str
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", name)
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", arg)
    assert tracing.sampler().get_description().startswith(f"FollowLinks{{{expected}")


def test_a_root_with_a_sampled_link_is_sampled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    sampler = tracing.sampler()
    linked = trace.SpanContext(
        int(REMOTE_TRACE, 16),
        int(REMOTE_PARENT, 16),
        is_remote=False,
        trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
    )
    unsampled = trace.SpanContext(int(EVENT_TRACE, 16), int(EVENT_PARENT, 16), is_remote=False)
    root = sampler.should_sample(None, 1, "sluice.flush", links=[trace.Link(linked)])
    assert root.decision.is_sampled()
    alone = sampler.should_sample(None, 1, "sluice.flush", links=[trace.Link(unsampled)])
    assert not alone.decision.is_sampled()
