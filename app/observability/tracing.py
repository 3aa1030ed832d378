"""Traces: OpenTelemetry, set up here and nowhere else.

What is traced (every span name starts with `sluice.` except the libraries' own):
- the request (FastAPI instrumentation: `POST /ingest`, `POST /pubsub/push`, with W3C
  `traceparent` taken from the request) or the RabbitMQ delivery (`sluice.delivery`, its
  parent taken from the message headers, which is how broker-backed HTTP mode joins the
  consumer's work to the original request's trace);
- the steps worth seeing, wrapped by `Traced` in `main.build_pipeline` (no step knows it
  is traced): `sluice.validate`, `sluice.anonymize`, `sluice.contract`, `sluice.buffer` or
  `sluice.forward`, and `sluice.commit_wait` while a request waits for its commit;
- `sluice.flush`, one per batch, a trace of its own (a batch serves many requests): it
  carries a **span link** to each request span it acknowledges, and each request span
  gets a link back and the attribute `sluice.flush.trace_id`; the database spans
  (asyncpg instrumentation, never with parameters) are its children.
- A CloudEvent's own `traceparent` (the CloudEvents distributed-tracing extension, on any
  transport) becomes a link on `sluice.validate`: one request carries events of many traces.

Configuration is the standard `OTEL_*` variables: `OTEL_TRACES_EXPORTER` (`none`, the
default, `otlp` over http/protobuf, `console`), `OTEL_EXPORTER_OTLP_*`, `OTEL_TRACES_SAMPLER`
(+ `_ARG`), `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_BSP_*`. Sampling is head
sampling; with no `OTEL_TRACES_SAMPLER`, Sluice's default is `parentbased_traceidratio` at
`DEFAULT_RATIO` (1 %, or `OTEL_TRACES_SAMPLER_ARG`): a caller's sampled `traceparent` is
always followed. Whatever the sampler, a root span with a sampled link is sampled
(`_FollowLinks`), so the flush of a sampled request is never lost to the ratio. Under
`ddtrace-run` with `DD_TRACE_OTEL_ENABLED=true`, the same spans go through Datadog's
implementation of the OpenTelemetry API instead (ddtrace instruments FastAPI and asyncpg).

Privacy: no attribute, event or status text leaves the process unless its key is on
`_SAFE_ATTRIBUTES` (`_Scrubbed` rebuilds every finished span before export): request paths
and query strings, client addresses, SQL parameters and exception messages (which may quote
a value) never do. Under ddtrace, `_DatadogScrubber` drops the same kinds of tags.

Cost when off: no step is wrapped, `flush_span` and `span` are a test of one global, and
`request_span` one context-variable read per wire message; no per-event work ever.
Cost of an unsampled request: the request span (non-recording), and nothing else: `Traced`
and `span` start no span under a non-recording one, the CloudEvents' `traceparent`s are not
read, and a batch with no sampled request gets no flush span and no database spans
(instrumentation is suppressed while it is written).
The provider is built per process, after gunicorn forks (`gunicorn.conf.py` `post_fork`),
never in the master: the SDK's export thread does not survive a fork.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Awaitable, Iterable, Iterator, Mapping, MutableMapping, Sequence
from contextvars import ContextVar
from importlib.metadata import version
from typing import Any, Generic, Protocol, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.instrumentation.utils import (
    suppress_http_instrumentation,
    suppress_instrumentation,
)
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_ON,
    Decision,
    ParentBasedTraceIdRatio,
    Sampler,
    SamplingResult,
)
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    Tracer,
    TraceState,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import Attributes
from starlette.types import ASGIApp, Receive, Scope, Send

from app.model.events import Candidate

log = logging.getLogger(__name__)

SERVICE_NAME = "sluice"
#: A span keeps at most this many links (the SDK's default limit is 128).
MAX_LINKS = 128
#: The share of the traces starting here that are sampled when `OTEL_TRACES_SAMPLER` is unset.
DEFAULT_RATIO = 0.01

# Attribute keys that may leave the process: names, templates, codes and counts only.
_SAFE_ATTRIBUTES = frozenset(
    {
        "http.method",
        "http.request.method",
        "http.route",
        "http.status_code",
        "http.response.status_code",
        "http.scheme",
        "url.scheme",
        "http.flavor",
        "network.protocol.version",
        "db.system",
        "db.system.name",
        "db.name",
        "db.namespace",
        "db.statement",  # asyncpg's SQL text: placeholders, never the values ($1)
        "db.query.text",
        "db.operation.name",
        "messaging.system",
        "messaging.operation",
        "messaging.operation.type",
        "messaging.destination.name",
        "exception.type",
        "error.type",
    }
)
_SAFE_PREFIX = "sluice."

_propagator = TraceContextTextMapPropagator()
_tracer: Tracer | None = None
_provider: TracerProvider | None = None
_request: ContextVar[Span | None] = ContextVar("sluice_request_span", default=None)


def enabled() -> bool:
    return _tracer is not None


def configure_from_environment() -> None:
    """Set tracing up for this process from `OTEL_*` (or ddtrace); idempotent."""
    if _tracer is not None:
        return
    if _under_ddtrace():
        _use_global_provider()
        return
    names = [n.strip() for n in os.environ.get("OTEL_TRACES_EXPORTER", "none").split(",")]
    exporters = [_exporter(name) for name in names if name and name != "none"]
    if not exporters:
        return
    provider = TracerProvider(resource=_resource(), sampler=sampler())
    for exporter in exporters:
        provider.add_span_processor(_Scrubbed(BatchSpanProcessor(exporter)))
    install(provider)
    log.info("tracing on", extra={"exporters": names})


def install(provider: TracerProvider) -> None:
    """Trace with `provider` from now on (tests hand one with an in-memory exporter) and
    instrument asyncpg with it, parameters never captured."""
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor  # noqa: PLC0415

    global _tracer, _provider
    _provider, _tracer = provider, provider.get_tracer(SERVICE_NAME)
    AsyncPGInstrumentor(capture_parameters=False).instrument(tracer_provider=provider)


def sampler() -> Sampler:
    """The sampler `OTEL_TRACES_SAMPLER`/`_ARG` name, or Sluice's default, following links.

    The SDK's own default (`parentbased_always_on`) traces every request, which costs
    about 40 % more CPU per event at full load (docs/observability.md, "What tracing
    costs"); an operator who turns the exporter on gets 1 % of the new traces instead, and
    every request whose caller sampled it."""
    named = os.environ.get("OTEL_TRACES_SAMPLER", "").strip()
    if named:
        # The SDK's parsing, `_ARG` included, so every standard name means what it says.
        from opentelemetry.sdk.trace.sampling import _get_from_env_or_default  # noqa: PLC0415

        return _FollowLinks(_get_from_env_or_default())
    ratio = os.environ.get("OTEL_TRACES_SAMPLER_ARG", "").strip()
    try:
        rate = float(ratio) if ratio else DEFAULT_RATIO
    except ValueError:
        raise RuntimeError(f"OTEL_TRACES_SAMPLER_ARG={ratio}: a ratio from 0 to 1") from None
    return _FollowLinks(ParentBasedTraceIdRatio(rate))


class _FollowLinks(Sampler):
    """`inner`, except that a root span with a sampled link is sampled: a flush is a trace
    of its own, and sampling it by its own trace id would drop most sampled requests' one.
    So is a request root `_HeadSampled` already picked."""

    def __init__(self, inner: Sampler) -> None:
        self._inner = inner

    def should_sample(  # noqa: PLR0917 - the SDK's `Sampler` signature
        self,
        parent_context: otel_context.Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        parent = trace.get_current_span(parent_context).get_span_context()
        if not parent.is_valid and (
            otel_context.get_value(_HEAD_SAMPLED, parent_context)
            or any(link.context.trace_flags.sampled for link in links or ())
        ):
            return ALWAYS_ON.should_sample(
                parent_context, trace_id, name, kind, attributes, links, trace_state
            )
        return self._inner.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"FollowLinks{{{self._inner.get_description()}}}"


def scrubbed(processor: SpanProcessor) -> SpanProcessor:
    """`processor`, handed only the attributes that may leave the process (tests use it
    around an in-memory exporter, so they see what an exporter would)."""
    return _Scrubbed(processor)


def shutdown() -> None:
    """Export what is pending, stop tracing, undo the instrumentation (end of process or test)."""
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor  # noqa: PLC0415

    global _tracer, _provider
    if _provider is not None:
        AsyncPGInstrumentor().uninstrument()
        _provider.shutdown()
    _tracer, _provider = None, None


def instrument_app(app: Any) -> None:
    """Request spans for a FastAPI app, without the ASGI `receive`/`send` spans, and only
    for the requests the sampler picks (`_HeadSampled`, outside the instrumentation)."""
    provider = _provider
    if provider is None:  # off, or ddtrace's own FastAPI integration does it
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor  # noqa: PLC0415

    FastAPIInstrumentor.instrument_app(
        app, tracer_provider=provider, exclude_spans=["receive", "send"]
    )
    # The instrumentation builds its middleware around the app's stack the same way.
    instrumented = app.build_middleware_stack
    app.build_middleware_stack = lambda: _HeadSampled(instrumented(), provider)


# Set in the context of a request `_HeadSampled` picked: its request span, a root, is then
# sampled without asking the ratio a second time about another trace id.
_HEAD_SAMPLED = otel_context.create_key("sluice-head-sampled")


class _HeadSampled:
    """Asks the sampler about each HTTP request before the FastAPI instrumentation sees it.

    The instrumentation's middleware took about 6 % of a worker at full load (attributes
    from the scope, route matching, a span, its metrics) even for requests whose span is
    not sampled. A request the sampler declines passes it by (the HTTP
    instrumentation suppressed) under a non-recording span of the same trace, which is what
    the SDK would have made: logs still carry its ids and the consumer still gets an
    unsampled `traceparent`. A sampled one goes through it, the decision kept."""

    def __init__(self, app: ASGIApp, provider: TracerProvider) -> None:
        self._app = app
        self._sampler = provider.sampler
        self._ids = provider.id_generator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        parent = _caller_context(scope)
        caller = trace.get_current_span(parent).get_span_context()
        trace_id = caller.trace_id if caller.is_valid else self._ids.generate_trace_id()
        decision = self._sampler.should_sample(parent, trace_id, "request", SpanKind.SERVER)
        if decision.decision is Decision.RECORD_AND_SAMPLE:
            # The instrumentation reads the caller's `traceparent` again from the scope.
            token = otel_context.attach(otel_context.set_value(_HEAD_SAMPLED, True))
            try:
                await self._app(scope, receive, send)
            finally:
                otel_context.detach(token)
            return
        unsampled = NonRecordingSpan(
            SpanContext(
                trace_id,
                self._ids.generate_span_id(),
                is_remote=False,
                trace_state=decision.trace_state,
            )
        )
        token = otel_context.attach(trace.set_span_in_context(unsampled))
        try:
            with suppress_http_instrumentation():
                await self._app(scope, receive, send)
        finally:
            otel_context.detach(token)


def _caller_context(scope: Scope) -> otel_context.Context:
    """The context of the request's W3C `traceparent` (and `tracestate`), or an empty one."""
    carrier = {
        name.decode("latin-1"): value.decode("latin-1")
        for name, value in scope["headers"]
        if name in {b"traceparent", b"tracestate"}
    }
    return _propagator.extract(carrier) if carrier else otel_context.Context()


# --- steps --------------------------------------------------------------------------------


class _Message(Protocol):
    @property
    def events(self) -> Sequence[object]: ...


M = TypeVar("M", bound=_Message)
M_contra = TypeVar("M_contra", bound=_Message, contravariant=True)


class _Step(Protocol[M_contra]):
    def submit(self, message: M_contra, /) -> Awaitable[None]: ...


class Traced(Generic[M]):
    """A step, with a span around its `submit` (the steps after it are its children).

    `request=True` on the head step: the span current when a message enters (the request
    or delivery span) is remembered, for the flush to link to."""

    def __init__(self, step: _Step[M], name: str, *, request: bool = False) -> None:
        self._step = step
        self._name = f"sluice.{name}"
        self._request = request

    async def submit(self, message: M) -> None:
        tracer = _tracer
        current = trace.get_current_span()
        # Off (shut down after the pipeline was built), or an unsampled request: no span.
        if tracer is None or _unsampled(current):
            await self._step.submit(message)
            return
        token = _request.set(current) if self._request else None
        try:
            with tracer.start_as_current_span(
                self._name,
                links=event_links(message.events) if self._request else None,
                attributes={"sluice.events": len(message.events)},
            ):
                await self._step.submit(message)
        finally:
            if token is not None:
                _request.reset(token)


def event_links(events: Sequence[object]) -> list[Link]:
    """A link per distinct valid `traceparent` the CloudEvents carry (at most MAX_LINKS)."""
    raws = (event.raw if isinstance(event, Candidate) else None for event in events)
    return _links(
        (raw.get("traceparent") if isinstance(raw, dict) else None for raw in raws), "cloudevent"
    )


def _links(traceparents: Iterable[object], kind: str) -> list[Link]:
    """A link (`sluice.link` = `kind`) per distinct valid W3C `traceparent` among
    `traceparents` (anything else is skipped), at most MAX_LINKS."""
    links: dict[str, Link] = {}
    for value in traceparents:
        if not isinstance(value, str) or value in links or len(links) >= MAX_LINKS:
            continue
        remote = trace.get_current_span(_propagator.extract({"traceparent": value}))
        if remote.get_span_context().is_valid:
            links[value] = Link(remote.get_span_context(), {"sluice.link": kind})
    return list(links.values())


def request_span() -> Span | None:
    """The request or delivery span of the message being submitted, when it is traced."""
    return _request.get()


def _unsampled(current: Span) -> bool:
    """Inside a span that is not recorded (its request was not sampled): nothing under it
    would be either, so no child is worth starting. Outside any span, the sampler decides."""
    return current.get_span_context().is_valid and not current.is_recording()


def _sampled(request: Span) -> bool:
    """The request was sampled (it may have ended: an `ack=enqueued` one usually has).
    ddtrace decides late and its flag may not be set yet: every span counts there."""
    return _provider is None or request.get_span_context().trace_flags.sampled


@contextlib.contextmanager
def span(name: str) -> Iterator[None]:
    """A child span named `sluice.<name>` when tracing and the current span records."""
    tracer = _tracer
    if tracer is None or _unsampled(trace.get_current_span()):
        yield
        return
    with tracer.start_as_current_span(f"sluice.{name}"):
        yield


@contextlib.contextmanager
def flush_span(request_spans: Sequence[Span | None], size: int) -> Iterator[None]:
    """The span of one batch flush: a new trace linked to the sampled requests it
    acknowledges, and each still-open request span linked back, with the flush's trace id.
    With no sampled request there is no flush span, and no database span either."""
    tracer = _tracer
    if tracer is None:
        yield
        return
    requests = list({id(s): s for s in request_spans if s is not None and _sampled(s)}.values())
    if not requests:
        with suppress_instrumentation():  # asyncpg's spans would be roots of their own
            yield
        return
    with (
        tracer.start_as_current_span(
            "sluice.flush",
            context=otel_context.Context(),  # a root: the batch belongs to no one request
            links=[Link(s.get_span_context()) for s in requests[:MAX_LINKS]],
            attributes={"sluice.batch.size": size, "sluice.batch.requests": len(requests)},
        ) as flush
    ):
        flushed = flush.get_span_context()
        trace_id = trace.format_trace_id(flushed.trace_id)
        for request in requests:
            if request.is_recording():  # an `ack=enqueued` request may have ended already
                request.set_attribute("sluice.flush.trace_id", trace_id)
                request.add_link(flushed, {"sluice.link": "flush"})
        yield


@contextlib.contextmanager
def delivery_span(headers: Mapping[str, object] | None, queue: str) -> Iterator[None]:
    """The consumer span of one RabbitMQ delivery, child of the context its headers carry."""
    tracer = _tracer
    if tracer is None:
        yield
        return
    carrier = {k: v for k, v in (headers or {}).items() if isinstance(v, str)}
    with tracer.start_as_current_span(
        "sluice.delivery",
        context=_propagator.extract(carrier),
        kind=SpanKind.CONSUMER,
        attributes={
            "messaging.system": "rabbitmq",
            "messaging.operation": "process",
            "messaging.destination.name": queue,
        },
    ):
        yield


@contextlib.contextmanager
def deliveries_span(headers: Sequence[Mapping[str, object] | None], queue: str) -> Iterator[None]:
    """The consumer span of deliveries submitted together: one delivery's span is the child
    of the context its headers carry (`delivery_span`); several deliveries' span is a
    root linked to each of theirs (OpenTelemetry's convention for batch processing)."""
    if len(headers) == 1:
        with delivery_span(headers[0], queue):
            yield
        return
    tracer = _tracer
    if tracer is None:
        yield
        return
    links = _links(((carried or {}).get("traceparent") for carried in headers), "delivery")
    with tracer.start_as_current_span(
        "sluice.delivery",
        context=otel_context.Context(),
        kind=SpanKind.CONSUMER,
        links=links,
        attributes={
            "messaging.system": "rabbitmq",
            "messaging.operation": "process",
            "messaging.destination.name": queue,
            "messaging.batch.message_count": len(headers),
        },
    ):
        yield


def inject(headers: MutableMapping[str, str]) -> None:
    """Add the current span's W3C `traceparent` to outgoing message headers."""
    if _tracer is not None:
        _propagator.inject(headers)


# --- logs ---------------------------------------------------------------------------------


class TraceIds(logging.Filter):
    """Adds `trace_id`/`span_id` (W3C hex) and `dd.trace_id`/`dd.span_id` (Datadog's
    decimal, the low 64 bits) of the current span to each log record, so logs and traces
    join in either backend. ddtrace's own log injection, when on, keeps its values."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = trace.format_trace_id(context.trace_id)
            record.span_id = trace.format_span_id(context.span_id)
            fields = record.__dict__
            fields.setdefault("dd.trace_id", str(context.trace_id & 0xFFFFFFFFFFFFFFFF))
            fields.setdefault("dd.span_id", str(context.span_id))
        return True


# --- set-up details ----------------------------------------------------------------------


def _exporter(name: str) -> SpanExporter:
    if name == "otlp":
        protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get(
            "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
        )
        if protocol != "http/protobuf":
            raise RuntimeError(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol}: only http/protobuf")
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
            OTLPSpanExporter,
        )

        return OTLPSpanExporter()
    if name == "console":
        return ConsoleSpanExporter()
    raise RuntimeError(f"OTEL_TRACES_EXPORTER={name}: use none, otlp or console")


def _resource() -> Resource:
    defaults: Attributes = {
        "service.name": SERVICE_NAME,
        "service.version": version("sluice"),
        "process.pid": os.getpid(),
    }
    # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win over the defaults.
    return Resource.create(defaults).merge(OTELResourceDetector().detect())


def _under_ddtrace() -> bool:
    otel_enabled = os.environ.get("DD_TRACE_OTEL_ENABLED", "").lower() in {"1", "true"}
    return otel_enabled and "ddtrace" in sys.modules  # ddtrace-run loaded it first


def _use_global_provider() -> None:
    """ddtrace's OpenTelemetry API implementation; its integrations trace FastAPI/asyncpg."""
    global _tracer  # noqa: PLW0603 - see install
    _tracer = trace.get_tracer(SERVICE_NAME)
    _install_datadog_scrubber()
    log.info("tracing on through ddtrace")


_DD_UNSAFE_TAGS = (
    "http.url",
    "url.path",
    "url.query",
    "url.full",
    "http.query.string",
    "http.useragent",
    "http.client_ip",
    "network.client.ip",
    "http.request.headers.",
    "http.response.headers.",
    "error.message",
    "error.msg",
    "error.stack",
    "out.host",
)


class _DatadogScrubber:
    """A ddtrace trace filter: drops the tags that could carry a path, a query, a client
    address or an exception message (which may quote a value)."""

    def process_trace(self, spans: list[Any]) -> list[Any]:
        for dd_span in spans:
            for key in [k for k in dd_span.get_tags() if k.startswith(_DD_UNSAFE_TAGS)]:
                dd_span.remove_tag(key)
        return spans


def _install_datadog_scrubber() -> None:
    from ddtrace.trace import tracer as dd_tracer  # noqa: PLC0415

    # Duck-typed as ddtrace's `TraceFilter`: subclassing it would import ddtrace everywhere.
    dd_tracer.configure(trace_processors=[_DatadogScrubber()])  # type: ignore[list-item]


class _Scrubbed(SpanProcessor):
    """Hands `inner` a copy of each finished span holding only safe attributes, events
    reduced to their exception type, and no status text."""

    def __init__(self, inner: SpanProcessor) -> None:
        self._inner = inner

    def on_start(self, span: Any, parent_context: otel_context.Context | None = None) -> None:
        self._inner.on_start(span, parent_context=parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        self._inner.on_end(_scrub(span))

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


def _safe(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (attributes or {}).items() if _is_safe(k)}


def _is_safe(key: str) -> bool:
    return key in _SAFE_ATTRIBUTES or key.startswith(_SAFE_PREFIX)


def _scrub(span: ReadableSpan) -> ReadableSpan:
    from opentelemetry.sdk.trace import Event  # noqa: PLC0415

    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=_safe(span.attributes),
        events=[Event(e.name, _safe(e.attributes), e.timestamp) for e in span.events],
        links=[Link(link.context, _safe(link.attributes)) for link in span.links],
        kind=span.kind,
        status=Status(span.status.status_code),
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )
