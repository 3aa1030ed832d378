"""Authentication of Pub/Sub push requests: the OIDC token Google signs and sends.

Real Pub/Sub sends `Authorization: Bearer <JWT>` signed by Google. It is verified with
google-auth against Google's certificates (fetched with httpx, cached per their
`Cache-Control`, refetched once for an unknown key id): signature, expiry, `aud` (the
configured audience), `iss` (Google), `email_verified`, and `email` among the configured
push service accounts. A bad or missing token is 401; a valid token for an account not
allowed is 403. The emulator sends no token: with no audience configured verification is
off, which production settings refuse while the endpoint is enabled.
"""

from __future__ import annotations

import re
import time

import httpx
from google.auth import exceptions as google_exceptions
from google.auth import jwt

from app.config import PubSubSettings
from app.errors import Forbidden, Unauthorized

_ISSUERS = frozenset({"accounts.google.com", "https://accounts.google.com"})
_MAX_AGE = re.compile(r"max-age=(\d+)")
_DEFAULT_CERTS_TTL_S = 3600.0
_REFETCH_AFTER_S = 60.0


class PushAuthenticator:
    def __init__(self, settings: PubSubSettings, http: httpx.AsyncClient) -> None:
        self._audience = settings.oidc_audience
        self._emails = frozenset(settings.oidc_emails)
        self._certs_url = settings.oidc_certs_url
        self._http = http
        self._certs: dict[str, str] = {}
        self._fetched_at = -_REFETCH_AFTER_S
        self._certs_expire_at = 0.0

    @property
    def enabled(self) -> bool:
        return self._audience is not None

    async def verify(self, authorization: str | None) -> None:
        """Returns when the request may proceed; raises `Unauthorized` or `Forbidden`."""
        if self._audience is None:
            return
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("a Google-signed OIDC bearer token is required")
        claims = await self._verified_claims(token)
        if claims.get("iss") not in _ISSUERS:
            raise Unauthorized("the push token was not issued by Google")
        if claims.get("email_verified") is not True or (
            self._emails and claims.get("email") not in self._emails
        ):
            raise Forbidden("the push token's service account is not allowed here")

    async def _verified_claims(self, token: str) -> dict[str, object]:
        if time.monotonic() >= self._certs_expire_at:
            await self._refresh()
        try:
            return self._decode(token)
        except Unauthorized:
            # Maybe signed with a key Google added since the last fetch: fetch once more,
            # but not more than once a minute, so bad tokens cannot hammer Google.
            if time.monotonic() - self._fetched_at < _REFETCH_AFTER_S:
                raise
            await self._refresh()
            return self._decode(token)

    def _decode(self, token: str) -> dict[str, object]:
        try:
            claims: dict[str, object] = jwt.decode(  # type: ignore[no-untyped-call] # untyped lib
                token, certs=self._certs, audience=self._audience, clock_skew_in_seconds=10
            )
        except (ValueError, google_exceptions.GoogleAuthError):
            raise Unauthorized("the push token is not valid for this endpoint") from None
        return claims

    async def _refresh(self) -> None:
        try:
            response = await self._http.get(self._certs_url, timeout=5)
            response.raise_for_status()
            certs = response.json()
        except (httpx.HTTPError, ValueError):
            if self._certs:
                return  # keep the last good set; Google rotates keys with a long overlap
            raise Unauthorized("Google's certificates could not be fetched") from None
        match = _MAX_AGE.search(response.headers.get("cache-control", ""))
        ttl = float(match.group(1)) if match else _DEFAULT_CERTS_TTL_S
        self._certs = {str(kid): str(pem) for kid, pem in dict(certs).items()}
        self._fetched_at = time.monotonic()
        self._certs_expire_at = self._fetched_at + ttl
