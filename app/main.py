"""The application factory and its lifespan, which owns every resource.

Start-up, in order: connection pool → partitions for now and ahead → batching loop →
periodic maintenance (`pipeline`, shared by the web and the consumer process) → the
RabbitMQ link (consumer process; web process in broker-backed HTTP mode) → the consumer.
`build_pipeline` is the one place the way through is assembled: validate → anonymize →
contract → a sink (the buffer, or the broker in broker-backed HTTP mode).
Shutdown in reverse: the consumer stops and acks what committed, the link closes,
maintenance stops, the batcher refuses new events and flushes every buffered one, then
the pool closes. Nothing connects at import.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

import asyncpg
import httpx
from fastapi import FastAPI
from pydantic import SecretStr

from app.api import admin, ingest, operations, privacy, quality, quarantine
from app.api.admission import install_buffer_gate
from app.api.dependencies import Services
from app.api.limits import HeaderLimits
from app.api.problems import install_problem_handlers
from app.api.pubsub import pubsub_router
from app.auth.ratelimit import RateLimiter
from app.auth.store import KeyStore
from app.broker import BrokerLink, BrokerPublisher
from app.clock import WallClock, utc_now
from app.config import DEVELOPMENT_PSEUDONYM_KEY, HttpAck, IngestAccess, Settings
from app.consumer import Consumer, DeliveryDecoder
from app.contracts.checker import ContractChecker
from app.drain import Drain
from app.model.events import AnonymizedEvent, Candidate, CloudEvent
from app.observability import metrics, tracing
from app.observability.access_log import AccessLogMiddleware, RefusalLog
from app.observability.logging import configure_logging
from app.observability.tracing import Traced
from app.pipeline.anonymize import Anonymizer
from app.pipeline.authorize import CheckSource
from app.pipeline.batcher import Batcher
from app.pipeline.forwarding import ForwardedDecoder
from app.pipeline.ingest import Pipeline
from app.pipeline.message import Step
from app.pipeline.quality import QualityRecorder
from app.pipeline.replay import Replayer
from app.pipeline.sinks import Buffer, Forward
from app.pipeline.steps import Anonymize, CheckContract, Validate
from app.pipeline.writer import BatchWriter
from app.privacy.engine import PolicyAnonymizer
from app.privacy.keyring import Keyring
from app.privacy.policy import load_policy
from app.privacy.posture import check_posture
from app.sources.amqp import AmqpDecoder
from app.sources.oidc import PushAuthenticator
from app.storage.database import create_pool, database_guard
from app.storage.keys import AuditRepository, KeyRepository
from app.storage.maintenance import ensure_partitions_ahead, run_periodically
from app.storage.migrations import head_revision
from app.storage.quality import QualityRepository
from app.storage.quarantine import QuarantineRepository
from app.storage.repository import EventRepository
from app.storage.residual import ResidualRepository
from app.storage.subjects import SubjectRepository

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    app = FastAPI(
        title="Sluice",
        summary="Durable CloudEvents ingestion into PostgreSQL",
        version="0.1.0",
        lifespan=_lifespan,
    )
    app.state.settings = settings
    install_problem_handlers(app)
    app.add_middleware(AccessLogMiddleware)
    app.add_middleware(HeaderLimits, limits=settings.limits)
    app.include_router(ingest.router)
    app.router.routes.insert(0, ingest.SERVED_ROUTE)
    app.include_router(admin.router)
    app.include_router(quarantine.router)
    app.include_router(quality.router)
    app.include_router(privacy.router)
    push = pubsub_router(settings)
    if push is not None:
        app.include_router(push)
    app.include_router(operations.router)
    tracing.instrument_app(app)
    app.state.refusals = RefusalLog()
    install_buffer_gate(app, settings, app.state.refusals)  # outermost: installed last
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    refusals: RefusalLog = app.state.refusals
    try:
        async with pipeline(settings) as services, _broker_mode(settings, services) as wired:
            drain = Drain(settings.drain_delay_s)
            drain.install()
            app.state.services = replace(wired, drain=drain)
            yield
    finally:
        refusals.flush()  # the last second's refusals, before the event loop goes


def _rules(settings: Settings) -> tuple[Keyring, PolicyAnonymizer, ContractChecker]:
    """The keys, the policy and the contracts, loaded before anything connects: a bad
    policy must stop the start, not the first event. Warns about unsafe defaults."""
    keyring = Keyring.from_settings(settings.privacy)
    policy = load_policy(settings.privacy.policy_path)
    posture = check_posture(policy, settings)  # raises when an allowlist is required
    if posture is not None:
        log.warning(posture)
    anonymizer = PolicyAnonymizer(policy, keyring)
    log.info("anonymization policy loaded", extra={"policy_version": anonymizer.policy_version})
    checker = ContractChecker.from_settings(settings.contracts, settings.quality)
    log.info("data contracts loaded", extra={"contracts": len(checker.registry)})
    if settings.privacy.pseudonym_key is None:
        log.warning(
            "SLUICE_PRIVACY_PSEUDONYM_KEY is unset: subjects are pseudonymized with the "
            "public development key %r; set a secret key before storing real data",
            DEVELOPMENT_PSEUDONYM_KEY,
        )
    _warn_if_open(settings)
    return keyring, anonymizer, checker


@asynccontextmanager
async def pipeline(settings: Settings) -> AsyncIterator[Services]:
    """Everything between a source and PostgreSQL, shared by the web and consumer processes."""
    if settings.database_url is None:
        raise RuntimeError("DATABASE_URL is not set (python -m app serve starts an embedded one)")
    keyring, anonymizer, checker = _rules(settings)
    pool = await create_pool(settings.database_url, settings.db)
    http = httpx.AsyncClient()  # outbound: Google's certificates for push tokens
    roles = contextlib.AsyncExitStack()
    try:
        maintainer_pool = await roles.enter_async_context(
            role_pool(settings.db.maintainer_url, settings, pool)
        )
        eraser_pool = await roles.enter_async_context(
            role_pool(settings.db.eraser_url, settings, pool)
        )
        keys = KeyStore(
            KeyRepository(pool),
            settings.auth,
            admin_token=settings.admin_token.get_secret_value() if settings.admin_token else None,
        )
        await keys.reload()
        repository = EventRepository(pool)
        upkeep = EventRepository(maintainer_pool)
        quarantined = QuarantineRepository(pool)
        quality_counts = QualityRepository(pool)
        breaker, policy = database_guard(pool, settings)
        recorder = QualityRecorder(quality_counts, policy=policy)
        writer = BatchWriter(
            repository,
            settings.db,
            max_backoff_s=settings.batch.retry_max_backoff_s,
            on_committed=recorder.record,
            policy=policy,
        )
        await ensure_partitions_ahead(upkeep, settings.db, utc_now())
        batcher = Batcher(
            writer.write,
            max_size=settings.batch.max_size,
            max_delay_s=settings.batch.max_delay.total_seconds(),
            write_concurrency=settings.batch.write_concurrency,
            max_events=settings.batch.buffer_max_events,
            max_bytes=settings.batch.buffer_max_bytes,
            retry_after_s=settings.batch.retry_after_s,
        )
        batcher.start()
        services = Services(
            settings=settings,
            repository=repository,
            batcher=batcher,
            pipeline=build_pipeline(settings, anonymizer, checker, Buffer(batcher)),
            anonymizer=anonymizer,
            checker=checker,
            subjects=SubjectRepository(eraser_pool),
            keyring=keyring,
            push_authenticator=PushAuthenticator(settings.pubsub, http),
            quarantine=quarantined,
            replayer=Replayer(
                quarantined, checker, writer, write_timeout_s=settings.batch.ack_timeout_s
            ),
            quality=quality_counts,
            schema_head=head_revision(),
            breaker=breaker,
            keys=keys,
            rate_limiter=RateLimiter(
                rate_per_s=settings.auth.rate_limit_per_s, burst=settings.auth.rate_limit_burst
            ),
            audit=AuditRepository(pool),
            residual=ResidualRepository(pool),
        )
        _tune_garbage_collector()
        background = [
            asyncio.create_task(recorder.run(settings.quality.flush_interval_s, quarantined)),
            asyncio.create_task(keys.run()),
            asyncio.create_task(metrics.sample_pool(pool)),
        ]
        if settings.db.maintenance_in_process:
            background.append(
                asyncio.create_task(
                    run_periodically(upkeep, settings.db, settings.retention, utc_now)
                )
            )
        try:
            yield services
        finally:
            await batcher.close()  # its last batches still report to the recorder
            for task in background:
                task.cancel()
            for task in background:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    finally:
        await http.aclose()
        await roles.aclose()
        await pool.close()


@asynccontextmanager
async def role_pool(
    url: SecretStr | None, settings: Settings, default: asyncpg.Pool
) -> AsyncIterator[asyncpg.Pool]:
    """A small pool for one database role's job (docs/security.md), or the ingest pool
    when that role's URL is unset."""
    if url is None:
        yield default
        return
    small = settings.db.model_copy(update={"pool_min_size": 1, "pool_max_size": 2})
    pool = await create_pool(url.get_secret_value(), small)
    try:
        yield pool
    finally:
        await pool.close()


def _warn_if_open(settings: Settings) -> None:
    if settings.auth.ingest_access(settings.env) is IngestAccess.OPEN:
        log.warning(
            "POST /ingest is OPEN: anyone who can reach it may write events as any source. "
            "Set SLUICE_AUTH_INGEST=keys and create keys (python -m app keys create) "
            "before exposing this service",
        )


@asynccontextmanager
async def _broker_link(settings: Settings) -> AsyncIterator[BrokerLink]:
    if settings.amqp_url is None:
        raise RuntimeError("AMQP_URL is not set")
    link = BrokerLink(settings.amqp_url, settings.amqp)
    link.start()
    try:
        yield link
    finally:
        await link.close()


@asynccontextmanager
async def _broker_mode(settings: Settings, services: Services) -> AsyncIterator[Services]:
    """With `SLUICE_HTTP_ACK=broker`, `POST /ingest` publishes to RabbitMQ instead."""
    if settings.http_ack is not HttpAck.BROKER:
        yield services
        return
    async with _broker_link(settings) as link:
        publisher = BrokerPublisher(link, settings.amqp, retry_after_s=settings.batch.retry_after_s)
        sink = Forward(publisher, services.keyring)
        forwarding = build_pipeline(settings, services.anonymizer, services.checker, sink)
        yield replace(services, broker=link, pipeline=forwarding)


def build_pipeline(
    settings: Settings,
    anonymizer: Anonymizer,
    checker: ContractChecker,
    sink: Step[AnonymizedEvent],
    *,
    wall_clock: WallClock = utc_now,
) -> Pipeline:
    """source check → validate → anonymize → contract → `sink`, each step handed the next;
    with tracing on, each wrapped in a span (`Traced`), the head remembering the request
    span. The contract stage's time checks judge against `wall_clock` (a backfill fixes it
    to one instant)."""
    if tracing.enabled():
        sink = Traced(sink, "buffer" if isinstance(sink, Buffer) else "forward")
    contract: Step[AnonymizedEvent] = CheckContract(checker, sink, wall_clock=wall_clock)
    if tracing.enabled():
        contract = Traced(contract, "contract")
    anonymize: Step[CloudEvent] = Anonymize(anonymizer, contract)
    if tracing.enabled():
        anonymize = Traced(anonymize, "anonymize")
    validate: Step[Candidate] = Validate(settings.limits, anonymizer, anonymize)
    if tracing.enabled():
        validate = Traced(validate, "validate", request=True)
    head = CheckSource(validate)
    return Pipeline(head, ack_timeout_s=settings.batch.ack_timeout_s)


def create_consumer_app(settings: Settings | None = None) -> FastAPI:
    """The consumer process (`python -m app consume`): the RabbitMQ consumer, and only the
    probes and metrics over HTTP, on `SLUICE_AMQP_HEALTH_PORT`."""
    settings = settings or Settings()
    app = FastAPI(title="Sluice consumer", version="0.1.0", lifespan=_consumer_lifespan)
    app.state.settings = settings
    install_problem_handlers(app)
    app.include_router(operations.router)
    tracing.instrument_app(app)
    return app


@asynccontextmanager
async def _consumer_lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Shutdown: the consumer stops and acks what committed, then the pipeline drains."""
    settings: Settings = app.state.settings
    async with pipeline(settings) as services, _broker_link(settings) as link:
        decoder = DeliveryDecoder(
            AmqpDecoder(settings.amqp, settings.limits), ForwardedDecoder(services.keyring)
        )
        consumer = Consumer(link, services.pipeline, decoder, settings)
        consumer.start()
        app.state.services = replace(services, broker=consumer)
        try:
            yield
        finally:
            await consumer.stop()


def _tune_garbage_collector() -> None:
    """Fewer, later collections of the youngest generation.

    Every event allocates a handful of short-lived dicts and dataclasses, so with the
    default threshold (700 allocations) the collector ran several times per batch, walking
    objects that were about to die anyway. Everything alive after start-up (modules, the
    compiled policy) is moved out of the collector's sight once, with `gc.freeze()`.
    """
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(_YOUNG_GENERATION_THRESHOLD, middle, old)


_YOUNG_GENERATION_THRESHOLD = 20_000


def create_app_from_environment() -> FastAPI:
    """The factory uvicorn and gunicorn import; configures logging first."""
    settings = Settings()
    configure_logging(settings.log_level)
    tracing.configure_from_environment()  # under gunicorn, `post_fork` did it already
    return create_app(settings)


def create_consumer_app_from_environment() -> FastAPI:
    settings = Settings()
    configure_logging(settings.log_level)
    tracing.configure_from_environment()
    return create_consumer_app(settings)
