"""The cost of tracing: the same load with tracing off, and with every span exported over
OTLP to a local receiver (the Datadog test agent's OTLP port, which stores what it gets)
at 100 % and at 10 % sampling. `make bench` reports the three throughputs."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sluice"
AGENT = CACHE / "ddagent-venv" / "bin" / "ddapm-test-agent"

SETTINGS = {
    "off": {"OTEL_TRACES_EXPORTER": "none"},
    "100%": {"OTEL_TRACES_SAMPLER": "parentbased_always_on"},
    "10%": {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"},
}


@dataclass(frozen=True)
class TracingCost:
    events_per_s: dict[str, float]  # by setting: off, 100%, 10%

    def cost_pct(self, setting: str) -> float:
        off = self.events_per_s["off"]
        return 100.0 * (off - self.events_per_s[setting]) / off if off else float("nan")


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def otlp_receiver() -> Iterator[str | None]:
    """The OTLP/HTTP endpoint of a local test agent, or None when it is not installed."""
    if not AGENT.exists():
        yield None
        return
    ports = [_port() for _ in range(3)]
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(  # noqa: S603 - the test agent from its own venv
            [
                str(AGENT),
                "--host=127.0.0.1",
                f"--port={ports[0]}",
                f"--otlp-http-port={ports[1]}",
                f"--otlp-grpc-port={ports[2]}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        endpoint = f"http://127.0.0.1:{ports[1]}"
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.TransportError):
                    httpx.get(f"http://127.0.0.1:{ports[0]}/info")
                    break
                time.sleep(0.2)
            yield endpoint
        finally:
            process.terminate()
            process.wait(timeout=10)


def measure(run: Callable[[dict[str, str]], float], endpoint: str) -> TracingCost:
    """`run(extra_env)` serves and loads the service once, returning events/s."""
    figures = {}
    for name, env in SETTINGS.items():
        tracing = (
            {}
            if name == "off"
            else {
                "OTEL_TRACES_EXPORTER": "otlp",
                "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            }
        )
        figures[name] = run({**tracing, **env})
    return TracingCost(figures)
