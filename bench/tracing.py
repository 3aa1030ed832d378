"""The cost of tracing: the same load with tracing off, and with spans exported over OTLP
to a local receiver (the Datadog test agent's OTLP port, which stores what it gets) at
100 % sampling and at the default sampling (`OTEL_TRACES_EXPORTER=otlp` and nothing else:
1 % of the traces started here, see docs/observability.md). `make bench` reports each
setting's throughput and service CPU per event, and its cost as a ratio to off, all three
measured back to back in one run (`ROUNDS` runs of each, the best kept)."""

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

# "default" names no sampler: what an operator gets by turning the exporter on.
SETTINGS: dict[str, dict[str, str]] = {
    "off": {"OTEL_TRACES_EXPORTER": "none"},
    "100%": {"OTEL_TRACES_SAMPLER": "parentbased_always_on"},
    "default": {},
}


@dataclass(frozen=True)
class Sample:
    """One setting's short run."""

    events_per_s: float
    service_us_per_event: float | None  # the service's CPU time (all workers) per event


@dataclass(frozen=True)
class TracingCost:
    samples: dict[str, Sample]  # by setting: off, 100%, default

    @property
    def events_per_s(self) -> dict[str, float]:
        return {name: sample.events_per_s for name, sample in self.samples.items()}

    def cost_pct(self, setting: str) -> float:
        """Throughput lost against off, in percent (negative: faster than off, i.e. noise)."""
        off = self.samples["off"].events_per_s
        return 100.0 * (off - self.samples[setting].events_per_s) / off if off else float("nan")

    def cpu_cost_pct(self, setting: str) -> float | None:
        """Service CPU per event added against off, in percent: steadier than events/s on a
        shared machine, since other processes' load changes the rate more than the work."""
        off, on = (
            self.samples["off"].service_us_per_event,
            self.samples[setting].service_us_per_event,
        )
        return None if off is None or on is None or not off else 100.0 * (on - off) / off

    def lines(self) -> list[str]:
        rows = []
        for name, sample in self.samples.items():
            cpu = sample.service_us_per_event
            row = f"  {name:<8} {sample.events_per_s:>8,.0f} events/s"
            row += f"  {cpu:6.1f} µs CPU/event" if cpu is not None else ""
            if name != "off":
                row += f"  cost {self.cost_pct(name):+.1f} % throughput"
                cpu_cost = self.cpu_cost_pct(name)
                row += f", {cpu_cost:+.1f} % CPU/event" if cpu_cost is not None else ""
            rows.append(row)
        return ["bench: tracing cost (OTLP to a local receiver; ratios to off, this run)", *rows]


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


#: Each setting is run this many times, the order reversed every other round, and its best
#: run kept: on a shared machine other work only ever slows a run down, and a drift in the
#: machine's load then falls on every setting alike.
ROUNDS = 2


def receiver_installed() -> bool:
    return AGENT.exists()


def measure(run: Callable[[dict[str, str]], Sample]) -> TracingCost:
    """`run(extra_env)` serves and loads the service once. Each traced run gets a receiver
    of its own: one still decoding the spans of a 100 % run would take CPU from the next."""
    names = list(SETTINGS)
    runs: dict[str, list[Sample]] = {name: [] for name in names}
    for round_ in range(ROUNDS):
        for name in names if round_ % 2 == 0 else reversed(names):
            if name == "off":
                runs[name].append(run(SETTINGS[name]))
                continue
            with otlp_receiver() as endpoint:
                if endpoint is None:
                    raise RuntimeError(f"{AGENT} is gone (make tools-observability)")
                runs[name].append(run(_environment(name, endpoint)))
    cost = TracingCost({name: _best(samples) for name, samples in runs.items()})
    print("\n".join(cost.lines()), flush=True)
    return cost


def _environment(name: str, endpoint: str) -> dict[str, str]:
    return {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        **SETTINGS[name],
    }


def _best(samples: list[Sample]) -> Sample:
    """The fastest run's throughput and the least CPU per event of any run."""
    cpu = [s.service_us_per_event for s in samples if s.service_us_per_event is not None]
    return Sample(max(s.events_per_s for s in samples), min(cpu) if cpu else None)
