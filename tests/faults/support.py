"""Shared pieces of the fault tests: the service's environment, probes, measurements."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

BUFFER_MAX_EVENTS = 2000


def fault_env(url: str, **extra: str) -> dict[str, str]:
    """Short timeouts, so a fault shows within seconds, and a small buffer."""
    return {
        "DATABASE_URL": url,
        "SLUICE_LOG_LEVEL": "WARNING",
        "SLUICE_BATCH_ACK_TIMEOUT_S": "2",
        "SLUICE_BATCH_RETRY_MAX_BACKOFF_S": "0.3",
        "SLUICE_BATCH_BUFFER_MAX_EVENTS": str(BUFFER_MAX_EVENTS),
        "SLUICE_DB_CONNECT_TIMEOUT_S": "1",
        "SLUICE_DB_COMMAND_TIMEOUT_S": "3",
        "SLUICE_DB_BREAKER_RESET_S": "1",
        **extra,
    }


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def wait_ready(http: httpx.AsyncClient, base_url: str, timeout_s: float) -> float:
    """Seconds until `/health/ready` answered 200."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if (await http.get(f"{base_url}/health/ready")).status_code == 200:
            return time.monotonic() - started
        await asyncio.sleep(0.2)
    raise AssertionError(f"not ready {timeout_s} s after the database came back")
