"""The measurements `python -m bench` combines: each loads one running service one way and
returns plain figures (dataclasses, JSON-ready). The CPU of every party is read over the
same window as the throughput, so per-event costs are ratios of one run.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench import cpu, database
from bench.load import LoadPlan, LoadRun, Tally
from bench.openloop import RatePlan, RateTally, run_open_loop
from bench.server import Service
from bench.wrk import WrkRun, run_wrk

# The stages whose CPU time the service counts itself (thread time, per worker).
STAGE_COUNTERS = {
    "anonymize": "sluice_anonymize_seconds_total",
    "contract": "sluice_contract_check_seconds_total",
}


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of `values` (nan when empty)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def cpu_figures(use: cpu.CpuUse | None, client_cpu_s: float, seconds: float) -> dict[str, Any]:
    """Percent of one core by party; `other` is the machine's busy time nobody here spent."""
    figures: dict[str, Any] = {"clients": 100.0 * client_cpu_s / seconds if seconds else 0.0}
    if use is not None:
        figures |= {
            "service": use.service,
            "service_workers": use.workers,
            "postgres": use.postgres,
            "other": max(0.0, use.machine_busy - use.service - use.postgres - figures["clients"]),
            "machine_busy": use.machine_busy,
            "machine_capacity": use.machine_capacity,
        }
    return figures


def busiest_share(figures: dict[str, Any]) -> float | None:
    """The busiest worker's part of all the workers' CPU (1/N when even)."""
    workers: list[float] = figures.get("service_workers") or []
    total = sum(workers)
    return max(workers) / total if total > 0 else None


def postgres_scope(url: str | None) -> Callable[[], set[int]] | None:
    return None if url is None else lambda: database.server_pids(url)


@dataclass(frozen=True, slots=True)
class Throughput:
    """A closed-loop run: what the clients saw and who spent the CPU (percent of a core)."""

    events_per_s: float
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    acked_events: int  # answered `stored` over the whole run, warm-up and tail too
    errors: dict[str, int]
    cpu: dict[str, Any]
    stage_us: dict[str, float] = field(default_factory=dict)  # µs per event, by stage

    def us_per_event(self, party: str) -> float | None:
        """CPU µs per committed event of `party` (service, postgres, clients)."""
        if party not in self.cpu:
            return None
        return cpu.us_per_unit(float(self.cpu[party]), self.events_per_s)

    @property
    def busiest_worker_share(self) -> float | None:
        return busiest_share(self.cpu)


def closed_loop(
    service: Service, plan: LoadPlan, *, postgres_url: str | None, stages: bool = False
) -> Throughput:
    """`plan`'s clients against `service`; CPU and the service's stage counters read at the
    window's edges. `postgres_url`: the database whose PostgreSQL processes count."""
    probe = cpu.CpuProbe(service.pid, postgres_scope(postgres_url))
    with LoadRun(plan) as run:
        timeline = run.start()
        time.sleep(max(0.0, timeline.warmup_end - time.monotonic()))
        probe.start()
        before = _stage_sample(service) if stages else {}
        time.sleep(max(0.0, timeline.end - time.monotonic()))
        use = probe.stop()
        after = _stage_sample(service) if stages else {}
        tally = run.collect()
    return _throughput(tally, use, plan.duration_s, _stage_seconds(before, after))


def _throughput(
    tally: Tally, use: cpu.CpuUse | None, seconds: float, stage_s: dict[str, float]
) -> Throughput:
    events_per_s = tally.window_events / seconds
    per_event = 1e6 / (events_per_s * seconds) if events_per_s > 0 else float("nan")
    return Throughput(
        events_per_s=events_per_s,
        requests_per_s=len(tally.latencies_s) / seconds,
        p50_ms=1000 * percentile(tally.latencies_s, 0.50),
        p99_ms=1000 * percentile(tally.latencies_s, 0.99),
        acked_events=tally.stored_events,
        errors=dict(tally.errors),
        cpu=cpu_figures(use, tally.cpu_s, seconds),
        stage_us={stage: spent * per_event for stage, spent in stage_s.items()},
    )


def _stage_sample(service: Service) -> dict[str, float | None]:
    return {stage: service.metric(name) for stage, name in STAGE_COUNTERS.items()}


def _stage_seconds(
    before: dict[str, float | None], after: dict[str, float | None]
) -> dict[str, float]:
    return {
        stage: end - start
        for stage, start in before.items()
        if start is not None and (end := after.get(stage)) is not None
    }


@dataclass(frozen=True, slots=True)
class Single:
    """Single-event requests through wrk: answered 2xx per second, latency, CPU."""

    requests_per_s: float
    ok: int  # 2xx answers (each one event stored, for Sluice)
    p50_ms: float
    p99_ms: float
    errors: dict[str, int]
    generator_pct: float  # wrk's CPU, percent of a core
    cpu: dict[str, Any]


def single_events(
    service: Service,
    *,
    connections: int,
    duration_s: float,
    source_prefix: str,
    postgres_url: str | None,
) -> Single:
    """A second of unmeasured warm-up (its own sources), then the measured wrk run."""
    run_wrk(
        service.base_url, connections=connections, duration_s=1, source_prefix=source_prefix + "w"
    )
    probe = cpu.CpuProbe(service.pid, postgres_scope(postgres_url))
    probe.start()
    result: WrkRun = run_wrk(
        service.base_url,
        connections=connections,
        duration_s=duration_s,
        source_prefix=source_prefix,
    )
    use = probe.stop()
    figures = cpu_figures(use, result.cpu_s, result.seconds)
    return Single(
        requests_per_s=result.ok_per_s,
        ok=result.ok,
        p50_ms=result.p50_ms,
        p99_ms=result.p99_ms,
        errors=result.errors,
        generator_pct=figures["clients"],
        cpu=figures,
    )


@dataclass(frozen=True, slots=True)
class OpenLoop:
    """A fixed-rate run: the rate planned and sent, latency from due time, answers."""

    planned_per_s: float
    sent_per_s: float
    p50_ms: float
    p99_ms: float
    statuses: dict[str, int]  # requests due in the window, by answer
    shed: int  # due but not sent (too many unanswered)
    acked_events: int
    cpu: dict[str, Any]
    rss_peak_mib: dict[str, float] = field(default_factory=dict)  # by worker pid
    rss_end_mib: dict[str, float] = field(default_factory=dict)

    def count(self, *statuses: str) -> int:
        return sum(self.statuses.get(status, 0) for status in statuses)


class RssWatch:
    """Samples the workers' resident memory every `interval_s` in a thread; keeps the peak."""

    def __init__(self, master_pid: int, interval_s: float = 0.5) -> None:
        self._master = master_pid
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.peak: dict[int, float] = {}
        self.last: dict[int, float] = {}

    def _run(self) -> None:
        while not self._stop.is_set():
            self.last = cpu.workers_rss_mib(self._master)
            for pid, mib in self.last.items():
                self.peak[pid] = max(mib, self.peak.get(pid, 0.0))
            self._stop.wait(self._interval)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def open_loop(
    service: Service, plan: RatePlan, *, postgres_url: str | None, watch_rss: bool = False
) -> OpenLoop:
    probe = cpu.CpuProbe(service.pid, postgres_scope(postgres_url))
    watch = RssWatch(service.pid)
    uses: list[cpu.CpuUse | None] = []

    def on_start() -> None:
        probe.start()
        if watch_rss:
            watch.start()

    def on_end() -> None:
        uses.append(probe.stop())
        if watch_rss:
            watch.stop()

    tally: RateTally = run_open_loop(plan, on_start=on_start, on_end=on_end)
    return OpenLoop(
        planned_per_s=plan.rate,
        sent_per_s=tally.sent_per_s,
        p50_ms=1000 * percentile(tally.latencies_s, 0.50),
        p99_ms=1000 * percentile(tally.latencies_s, 0.99),
        statuses=dict(tally.statuses),
        shed=tally.shed,
        acked_events=tally.stored_events,
        cpu=cpu_figures(uses[0] if uses else None, tally.cpu_s, plan.duration_s),
        rss_peak_mib={str(pid): mib for pid, mib in watch.peak.items()},
        rss_end_mib={str(pid): mib for pid, mib in watch.last.items()},
    )
