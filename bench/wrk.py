"""Single-event requests from `wrk` (Debian's package; `make bench` installs it).

Many clients, one event per request: the request rate is high, so the load generator's
own cost per request matters more than with batches; wrk (C, one thread) spends a
fraction of what an aiohttp client does. `single.lua` builds each request's body (the
load's event shape, unique ids); wrk opens all its connections at once. Its CPU time is
read from the kernel's accounting of children (`RUSAGE_CHILDREN`) around the run.
"""

from __future__ import annotations

import resource
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import orjson

from bench.events import EVENT_TIME, EVENT_TYPE

SCRIPT = Path(__file__).resolve().parent / "single.lua"


def available() -> bool:
    return shutil.which("wrk") is not None


@dataclass(frozen=True, slots=True)
class WrkRun:
    requests: int  # answered
    seconds: float
    errors: dict[str, int]  # non-2xx answers ("status"), socket errors, timeouts
    p50_ms: float
    p99_ms: float
    cpu_s: float  # wrk's own CPU time

    @property
    def ok(self) -> int:
        return self.requests - self.errors.get("status", 0)

    @property
    def ok_per_s(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0


def run_wrk(
    base_url: str, *, connections: int, duration_s: float, source_prefix: str, threads: int = 1
) -> WrkRun:
    """`wrk` for `duration_s` (whole seconds, at least 1) against `base_url`/ingest."""
    command = [
        *("wrk", "--threads", str(threads), "--connections", str(connections)),
        *("--duration", f"{max(1, round(duration_s))}s", "--timeout", "10s"),
        *("--script", str(SCRIPT), f"{base_url}/ingest"),
        *("--", source_prefix, EVENT_TYPE, EVENT_TIME),
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    output = subprocess.run(  # noqa: S603 - wrk with arguments built here
        command, capture_output=True, text=True, check=True, timeout=duration_s + 60
    ).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    figures = orjson.loads(output.strip().splitlines()[-1])
    errors = {
        name: int(figures[name])
        for name in ("status", "connect", "read", "write", "timeout")
        if figures[name]
    }
    return WrkRun(
        requests=int(figures["requests"]),
        seconds=figures["duration_us"] / 1e6,
        errors=errors,
        p50_ms=figures["p50_us"] / 1000,
        p99_ms=figures["p99_us"] / 1000,
        cpu_s=(after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
    )
