"""Helpers shared by the tests: event factories, a free port, a served process."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import asyncpg
import httpx
import pgserver

from app.model.events import AnonymizedEvent, Transport

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def unique_source(prefix: str = "test") -> str:
    """A CloudEvents source no other test uses, so tests share a database safely."""
    return f"/{prefix}/{uuid.uuid4().hex}"


def recent_time(hours_ago: float = 1.0) -> str:
    """An RFC 3339 `time` within the quality checks' age window, whenever tests run."""
    moment = datetime.now(UTC) - timedelta(hours=hours_ago)
    return moment.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def make_event(source: str, event_id: str | int, **overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": str(event_id),
        "source": source,
        "type": "com.example.order.created",
        "time": recent_time(),
        "datacontenttype": "application/json",
        "data": {"order": str(event_id), "amount": 42},
    }
    event.update(overrides)
    return event


def anonymized_event(
    source: str, event_id: str, *, data_json: str | None = '{"n": 1}', size: int = 64
) -> AnonymizedEvent:
    """An event as the privacy stage hands it to the batcher and the writer."""
    return AnonymizedEvent(
        specversion="1.0",
        id=event_id,
        source=source,
        type="com.example.test",
        time=None,
        subject_pseudonym=None,
        pseudonym_key_id=None,
        datacontenttype=None,
        dataschema=None,
        data_json=data_json,
        data_is_base64=False,
        extensions_json="{}",
        size=size,
        transport=Transport.HTTP,
        policy_version="test",
    )


async def reachable(url: str) -> bool:
    """Whether a PostgreSQL server answers at `url` (within 3 s)."""
    try:
        connection = await asyncpg.connect(url, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await connection.close()
    return True


def with_database(url: str, name: str) -> str:
    """`url` pointing at database `name` instead (host/port/socket query kept)."""
    head, sep, query = url.partition("?")
    return f"{head.rsplit('/', 1)[0]}/{name}{sep}{query}"


def run_app(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m app ARGS` as a child process, with `env` on top of ours; never raises."""
    return subprocess.run(  # noqa: S603 - our own interpreter running our own CLI
        [sys.executable, "-m", "app", *args],
        cwd=PROJECT_ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def run_pytest_under_ci(test_id: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run one test in a child pytest with `CI=true` and `env` on top of ours."""
    return subprocess.run(  # noqa: S603 - our own interpreter running our own tests
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test_id],
        cwd=PROJECT_ROOT,
        env={**os.environ, "CI": "true", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def served(
    env: dict[str, str],
    *args: str,
    timeout_s: float = 30.0,
    log: IO[bytes] | None = None,
    command: str = "serve",
    probe: str = "live",
    wrapper: tuple[str, ...] = (),
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Run `python -m app serve` (or `command`, e.g. `consume`) in a child process; yield
    its base URL and the process once `/health/<probe>` answers. `wrapper` runs before the
    interpreter (e.g. `ddtrace-run`).

    Its output goes to `log` (a temporary file unless given), never to a pipe nobody
    reads: a busy service fills a pipe's 64 KiB and then blocks on its next log line.
    """
    port = free_port()
    argv = [*wrapper, sys.executable, "-m", "app", command, "--port", str(port), *args]
    with contextlib.ExitStack() as stack:
        output = log if log is not None else stack.enter_context(tempfile.TemporaryFile())
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            argv,
            cwd=PROJECT_ROOT,
            env={**os.environ, **env},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        base_url = f"http://127.0.0.1:{port}"
        try:
            wait_until_healthy(base_url, process, timeout_s, output, probe=probe)
            yield base_url, process
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def read_log(log: IO[bytes]) -> str:
    """All the child wrote so far. Leaves the shared offset at the end, where the child
    appends next."""
    log.flush()
    log.seek(0)
    return log.read().decode(errors="replace")


def wait_until_healthy(
    base_url: str,
    process: subprocess.Popen[bytes],
    timeout_s: float,
    log: IO[bytes],
    *,
    probe: str = "live",
) -> None:
    """Poll `/health/<probe>` until 200; fail early, with the log's tail, if it exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = read_log(log)
            raise RuntimeError(f"server exited with {process.returncode}:\n{output[-4000:]}")
        try:
            if httpx.get(f"{base_url}/health/{probe}", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(
        f"server at {base_url} not {probe} in {timeout_s:.0f} s:\n{read_log(log)[-4000:]}"
    )


class PrivatePostgres:
    """A PostgreSQL server of the test's own (pgserver's real binaries) it may stop."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.url = ""

    def start(self) -> None:
        server = pgserver.get_server(self.directory, cleanup_mode="stop")
        self._server = server
        self.url = server.get_uri().replace("/postgres?", "/sluice?", 1)

    def stop(self) -> None:
        self._server.cleanup()
