"""The service under test (`python -m app serve --workers N`) or a peer, as a child process.

It runs in its own session, so a Ctrl-C at the terminal reaches the benchmark only,
which then stops the service with SIGTERM (a graceful drain) and waits for it. Its output
goes to a temporary log, shown only when it fails to start.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

from tests.support import free_port, read_log, wait_until_healthy

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True, slots=True)
class Service:
    base_url: str
    pid: int  # gunicorn's master; its workers are its children
    log: IO[bytes]

    def log_tail(self, size: int = 4000) -> str:
        return read_log(self.log)[-size:]

    def metric(self, name: str) -> float | None:
        """An unlabelled sample from the service's `/metrics` (summed over workers), or
        None when it cannot be read."""
        try:
            text = httpx.get(f"{self.base_url}/metrics", timeout=5).text
        except httpx.HTTPError:
            return None
        for line in text.splitlines():
            if line.startswith(f"{name} "):
                return float(line.split()[1])
        return None


CONTRACTS_DIR = Path(__file__).resolve().parent / "contracts"


@contextmanager
def running_service(
    database_url: str,
    *,
    workers: int,
    timeout_s: float = 60.0,
    extra_env: dict[str, str] | None = None,
) -> Iterator[Service]:
    """Sluice as a user runs it: `python -m app serve --workers N`, its default log level
    and policy, with the bench's contract (so every event is checked)."""
    env = {
        "DATABASE_URL": database_url,
        "SLUICE_CONTRACTS_DIR": os.environ.get("SLUICE_CONTRACTS_DIR", str(CONTRACTS_DIR)),
        **(extra_env or {}),
    }
    command = [sys.executable, "-m", "app", "serve", "--workers", str(workers), "--port"]
    with _running(command, env, timeout_s) as service:
        yield service


PEERS = ("competent", "naive", "bare")


@contextmanager
def running_peer(
    peer: str, database_url: str, *, workers: int, timeout_s: float = 60.0
) -> Iterator[Service]:
    """A peer of `bench/peers/` served as Sluice is: gunicorn with N uvicorn workers, the
    settings a team would start with (gunicorn's defaults)."""
    if peer not in PEERS:
        raise ValueError(f"unknown peer {peer!r}: one of {', '.join(PEERS)}")
    command = [
        *(sys.executable, "-m", "gunicorn", f"bench.peers.{peer}:app"),
        *("--worker-class", "uvicorn_worker.UvicornWorker", "--workers", str(workers)),
        "--bind",
    ]
    with _running(command, {"PEER_DATABASE_URL": database_url}, timeout_s, bind=True) as service:
        yield service


@contextmanager
def _running(
    command: list[str], env: dict[str, str], timeout_s: float, *, bind: bool = False
) -> Iterator[Service]:
    """Run `command` + a free port (`127.0.0.1:PORT` with `bind`) until `/health/ready`."""
    port = free_port()
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and modules
            [*command, f"127.0.0.1:{port}" if bind else str(port)],
            cwd=PROJECT_ROOT,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            base_url = f"http://127.0.0.1:{port}"
            wait_until_healthy(base_url, process, timeout_s, log, probe="ready")
            yield Service(base_url=base_url, pid=process.pid, log=log)
        finally:
            _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
