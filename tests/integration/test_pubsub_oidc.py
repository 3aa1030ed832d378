"""OIDC verification of push requests, with tokens signed by a local key and the verifier
pointed at a local certificate endpoint (the emulator sends no token at all)."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt, jwt

from tests.conftest import SettingsFactory, running_app
from tests.support import unique_source

AUDIENCE = "https://sluice.test/pubsub/push"
PUSHER = "pusher@project.iam.gserviceaccount.com"
KEY_ID = "test-key"


def _key_and_certificate() -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return private, certificate.public_bytes(serialization.Encoding.PEM)


GOOD_KEY, GOOD_CERT = _key_and_certificate()
OTHER_KEY, _ = _key_and_certificate()


@pytest.fixture(scope="module")
def certs_url() -> Iterator[str]:
    body = orjson.dumps({KEY_ID: GOOD_CERT.decode()})

    class Certs(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("cache-control", "public, max-age=300")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Certs)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/certs"
    finally:
        server.shutdown()


@pytest.fixture
async def client(
    make_settings: SettingsFactory, certs_url: str
) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(
        pubsub={"oidc_audience": AUDIENCE, "oidc_emails": [PUSHER], "oidc_certs_url": certs_url}
    )
    async with running_app(settings) as app_client:
        yield app_client


def _token(key: bytes = GOOD_KEY, **overrides: Any) -> str:
    now = int(time.time())
    claims = {
        "iss": "https://accounts.google.com",
        "aud": AUDIENCE,
        "email": PUSHER,
        "email_verified": True,
        "iat": now,
        # An hour, as Google's own: the parameters below are made at collection time, and a
        # full `make test` reaches them many minutes later.
        "exp": now + 3600,
        "sub": "1234",
        **overrides,
    }
    signer = crypt.RSASigner.from_string(key, key_id=KEY_ID)
    return jwt.encode(signer, claims).decode()


def _delivery(message_id: str, source: str) -> bytes:
    data = orjson.dumps({"specversion": "1.0", "id": message_id, "source": source, "type": "t"})
    return orjson.dumps(
        {
            "message": {"data": base64.b64encode(data).decode(), "messageId": message_id},
            "subscription": "projects/p/subscriptions/s",
        }
    )


# Tokens are made when the test runs, not at collection: a long suite outlived their
# ten minutes of validity, turning the 403 cases into 401s.
@pytest.mark.parametrize(
    ("make_token", "status"),
    [
        (lambda: None, 401),
        (lambda: "not-a-jwt", 401),
        (lambda: _token(aud="https://elsewhere.example"), 401),
        (lambda: _token(iat=int(time.time()) - 7200, exp=int(time.time()) - 3600), 401),
        (lambda: _token(key=OTHER_KEY), 401),  # signed by another key under the same key id
        (lambda: _token(iss="https://evil.example"), 401),
        (lambda: _token(email="intruder@project.iam.gserviceaccount.com"), 403),
        (lambda: _token(email_verified=False), 403),
    ],
)
async def test_a_bad_token_is_refused_and_stores_nothing(
    client: httpx.AsyncClient,
    db: asyncpg.Connection,
    make_token: Callable[[], str | None],
    status: int,
) -> None:
    token = make_token()
    source = unique_source()
    headers = {"content-type": "application/json"}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    response = await client.post("/pubsub/push", content=_delivery("1", source), headers=headers)
    assert response.status_code == status, response.text
    assert response.json()["code"] == ("auth.unauthorized" if status == 401 else "auth.forbidden")
    assert await db.fetchval("SELECT count(*) FROM events WHERE source = $1", source) == 0


async def test_a_valid_token_is_accepted(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    source = unique_source()
    response = await client.post(
        "/pubsub/push",
        content=_delivery("1", source),
        headers={"content-type": "application/json", "authorization": f"Bearer {_token()}"},
    )
    assert response.status_code == 204, response.text
    assert await db.fetchval("SELECT count(*) FROM events WHERE source = $1", source) == 1
