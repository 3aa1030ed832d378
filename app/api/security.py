"""Who may call what: API keys (or the admin token) checked at the HTTP edge.

A key is sent as `Authorization: Bearer <key>` or `X-API-Key: <key>`. Missing, unknown,
wrong, expired and revoked keys all get the same `401 auth.unauthorized` with
`WWW-Authenticate`, so no answer tells which keys exist; a live key without the route's
scope gets `403 auth.forbidden`. Scopes: `ingest` for `POST /ingest` (when
`SLUICE_AUTH_INGEST=keys`), `admin:read` for every `GET /admin/...`, `admin:write` for
every other admin route, `metrics` for `/metrics` when `SLUICE_AUTH_METRICS=key`.
Every admin write is audited (`admin_audit`) with the key's name before it runs, and
each key's requests are rate-limited (`auth.ratelimit`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Annotated

from fastapi import Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from app.api.dependencies import Services, ServicesDep
from app.auth.keys import ApiKey, Scope
from app.clock import utc_now
from app.config import IngestAccess, MetricsAccess
from app.errors import Forbidden, Unauthorized

log = logging.getLogger(__name__)

_bearer = HTTPBearer(
    auto_error=False, description="An API key (`slk_...`), or the admin token for /admin"
)
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key")

BearerDep = Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)]
ApiKeyDep = Annotated[str | None, Security(_api_key)]


def authorize(
    services: Services,
    scope: Scope,
    bearer: HTTPAuthorizationCredentials | None,
    header: str | None,
) -> ApiKey:
    """The key presented, if it is live and holds `scope`; raises `Unauthorized`,
    `Forbidden`, or `RateLimited` when the key spent its budget."""
    presented = header if header else (bearer.credentials if bearer is not None else None)
    return authorize_presented(services, scope, presented)


def presented_key(headers: Mapping[str, str]) -> str | None:
    """What `X-API-Key` (first) or `Authorization: Bearer` carries, read as the two
    security schemes above read it: for a route that reads its own headers."""
    header = headers.get("x-api-key")
    if header:
        return header
    scheme, _, credentials = headers.get("authorization", "").partition(" ")
    return credentials if scheme.lower() == "bearer" and credentials else None


def authorize_presented(services: Services, scope: Scope, presented: str | None) -> ApiKey:
    keys = services.keys
    key = keys.authenticate(presented) if presented and keys is not None else None
    if key is None:
        raise Unauthorized()
    if scope not in key.scopes:
        log.warning("api key lacks the scope", extra={"key_name": key.name, "scope": scope})
        raise Forbidden(f"this key does not hold the {scope} scope")
    if services.rate_limiter is not None and services.rate_limiter.enabled:
        services.rate_limiter.take(key.key_id)
    return key


def ingest_key(services: Services, headers: Mapping[str, str]) -> ApiKey | None:
    """The ingesting key, or None when ingest is open (`SLUICE_AUTH_INGEST=open`).
    Called by `POST /ingest` itself, not as a dependency: FastAPI's dependency solving
    cost a sixth of a one-event request."""
    settings = services.settings
    if settings.auth.ingest_access(settings.env) is IngestAccess.OPEN:
        return None
    return authorize_presented(services, Scope.INGEST, presented_key(headers))


#: How `POST /ingest` declares the schemes it reads by hand (`ingest_key`).
INGEST_SECURITY: list[dict[str, list[str]]] = [{"HTTPBearer": []}, {"APIKeyHeader": []}]


async def admin_key(
    request: Request, services: ServicesDep, bearer: BearerDep, header: ApiKeyDep
) -> ApiKey:
    """`admin:read` for reads, `admin:write` (audited) for everything else."""
    reading = request.method in ("GET", "HEAD")
    key = authorize(services, Scope.ADMIN_READ if reading else Scope.ADMIN_WRITE, bearer, header)
    if not reading:
        route = request.scope.get("route")
        action = f"admin.{getattr(route, 'name', 'unknown')}"
        log.info("admin action", extra={"key_name": key.name, "action": action})
        if services.audit is not None:
            await services.audit.record(at=utc_now(), actor=key.name, action=action, target=None)
    return key


async def metrics_key(services: ServicesDep, bearer: BearerDep, header: ApiKeyDep) -> None:
    if services.settings.auth.metrics is MetricsAccess.KEY:
        authorize(services, Scope.METRICS, bearer, header)
