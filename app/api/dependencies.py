"""What routes may reach: the `Services` the lifespan built, one typed object."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from app.auth.ratelimit import RateLimiter
from app.auth.store import KeyStore
from app.broker import BrokerStatus
from app.config import Settings
from app.contracts.checker import ContractChecker
from app.drain import Drain
from app.pipeline.anonymize import Anonymizer
from app.pipeline.batcher import Batcher
from app.pipeline.ingest import Pipeline
from app.pipeline.replay import Replayer
from app.privacy.keyring import Keyring
from app.sources.oidc import PushAuthenticator
from app.storage.breaker import DatabaseBreaker
from app.storage.keys import AuditRepository
from app.storage.quality import QualityRepository
from app.storage.quarantine import QuarantineRepository
from app.storage.repository import EventRepository
from app.storage.residual import ResidualRepository
from app.storage.subjects import SubjectRepository


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    repository: EventRepository
    batcher: Batcher
    pipeline: Pipeline  # ends in the buffer, or in the broker (SLUICE_HTTP_ACK=broker)
    anonymizer: Anonymizer
    checker: ContractChecker
    subjects: SubjectRepository
    keyring: Keyring
    push_authenticator: PushAuthenticator
    quarantine: QuarantineRepository
    replayer: Replayer
    quality: QualityRepository
    schema_head: str | None  # the Alembic revision this code expects
    broker: BrokerStatus | None = None  # the consumer; the link in broker-backed HTTP mode
    breaker: DatabaseBreaker | None = None  # the circuit breaker around PostgreSQL
    drain: Drain | None = None  # the web process's SIGTERM drain (readiness fails first)
    keys: KeyStore | None = None  # None: no credential is valid (every guarded route 401s)
    rate_limiter: RateLimiter | None = None
    audit: AuditRepository | None = None
    residual: ResidualRepository | None = None  # the residual-PII scan's reads


async def get_services(request: Request) -> Services:
    # async on purpose: FastAPI runs a plain `def` dependency in a worker thread, a
    # thread hop per request that cost a fifth of a worker's CPU under load.
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]
