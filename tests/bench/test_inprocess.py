"""`python -m bench.inprocess` works: a tiny run of each mode prints its figures (real
PostgreSQL for the in-process clients; the figures of so short a run mean nothing)."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.support import PROJECT_ROOT


def _run(*args: str) -> str:
    done = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "bench.inprocess", *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout


def test_in_process_clients_commit_every_request_and_report_cpu_per_event() -> None:
    out = _run("--clients", "4", "--batch", "10", "--requests", "20")
    assert re.search(r"[\d.]+ µs CPU per event", out), out
    assert "statuses {200: 20}" in out, out


def test_every_stage_is_timed() -> None:
    out = _run("--stages", "--batch", "5")
    for stage in ("decode", "validate", "anonymize", "contract", "decode → render"):
        assert re.search(rf"^{stage}.* [\d.]+ µs per event$", out, re.MULTILINE), out
