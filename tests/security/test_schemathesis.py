"""Acceptance 3: schemathesis against the served app's own `/openapi.json`, every check
(no 5xx, responses match the documented schema and status codes, and the rest of its
checks), auth-aware: it sends a key holding every scope, and ingest and `/metrics`
require keys (`ignored_auth` checks that a request without them is refused). A bounded
number of examples per operation keeps it under a minute.

Two checks are excluded, for reasons that are the service's design, not its defects:
`positive_data_acceptance` expects every schema-valid request to succeed, but ingest
judges beyond the schema (an event from the year 2000 is `quality.too_old`, a Pub/Sub
push must be an envelope, a subject-access cursor must be one this service issued);
`negative_data_rejection` expects pydantic to refuse what it coerces in lax mode (`0`
for `false`, a number of seconds for a timestamp)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.conftest import in_ci
from tests.security.keys import make_key
from tests.support import served

SCHEMATHESIS = (
    Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    / "sluice"
    / "schemathesis-venv"
    / "bin"
    / "schemathesis"
)
MAX_EXAMPLES = 15


def test_schemathesis_finds_nothing(database_url: str, tmp_path: Path) -> None:
    if not SCHEMATHESIS.exists():
        message = f"schemathesis is not installed at {SCHEMATHESIS} (make tools-auth)"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    key = asyncio.run(
        make_key(
            database_url,
            f"schemathesis-{uuid.uuid4().hex[:8]}",
            ["ingest", "admin:read", "admin:write", "metrics"],
        )
    )
    env = {
        "DATABASE_URL": database_url,
        "SLUICE_ENV": "test",
        "SLUICE_AUTH_INGEST": "keys",
        "SLUICE_AUTH_METRICS": "key",
        "SLUICE_AUTH_RATE_LIMIT_PER_S": "0",
    }
    with served(env) as (base_url, _):
        result = subprocess.run(  # noqa: S603 - the tool's own entry point, our arguments
            [
                str(SCHEMATHESIS),
                "run",
                f"{base_url}/openapi.json",
                "--checks",
                "all",
                "--exclude-checks",
                "positive_data_acceptance,negative_data_rejection",
                "--max-examples",
                str(MAX_EXAMPLES),
                "--continue-on-failure",
                "--header",
                f"Authorization: Bearer {key}",
                "--request-timeout",
                "30",
                "--seed",
                "15",
            ],
            cwd=tmp_path,  # its cache directory lands here, not in the clone
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-2000:]
