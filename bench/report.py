"""The verdict: figures, PASS/FAIL, the printed block and the JSON beside it."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bench.cpu import CpuUse

RESULTS_DIR = Path(__file__).resolve().parent / "results"
# Percent of a core used by neither the clients, the service nor PostgreSQL (the kernel's
# share of loopback traffic stays well below): beyond it, another job shared the machine.
OTHER_CPU_WARNING = 20.0


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of `values` (nan when empty)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class Result:
    events_per_s: float
    requests_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    copy_rows_per_s: float
    min_ratio: float
    acked_events: int  # answered `stored`, over the whole run
    db_events: int  # SELECT count(*) FROM events afterwards
    errors: dict[str, int]
    setup: dict[str, Any]  # what was run: clients, batch, workers, server knobs, database
    cpu_pct: dict[str, Any] = field(default_factory=dict)  # percent of one core
    # Seconds the service spent in its anonymization stage during the window (from its
    # own `sluice_anonymize_seconds_total`), and the ceiling on its share of the
    # end-to-end CPU time per event (service + PostgreSQL).
    anonymize_s: float | None = None
    max_anonymize_share: float = 0.10
    # The same for the contract and quality checks (`sluice_contract_check_seconds_total`):
    # reported, with no ceiling of its own.
    contract_s: float | None = None

    # The RabbitMQ consumer draining a pre-filled queue (None: not measured).
    consumer_processes: int = 0
    consumer_messages: int = 0
    consumer_stored: int = 0
    consumer_events_per_s: float | None = None
    # The Beam backfill on the DirectRunner (None: not measured; `--beam-events`).
    beam_events: int = 0
    beam_stored: int = 0
    beam_workers: int = 0
    beam_rows_per_s: float | None = None
    # Events/s of the short tracing runs, by setting: off, 100%, 10% (OTLP to a local receiver).
    tracing_events_per_s: dict[str, float] | None = None

    def _per_event_us(self, stage_s: float | None) -> float | None:
        if stage_s is None or self.events_per_s <= 0:
            return None
        seconds = float(self.setup["duration_s"])
        return 1e6 * stage_s / (self.events_per_s * seconds)

    @property
    def anonymize_us_per_event(self) -> float | None:
        return self._per_event_us(self.anonymize_s)

    @property
    def contract_us_per_event(self) -> float | None:
        return self._per_event_us(self.contract_s)

    @property
    def end_to_end_us_per_event(self) -> float | None:
        cpu = self.cpu_pct
        if "service" not in cpu or self.events_per_s <= 0:
            return None
        busy_cores = (float(cpu["service"]) + float(cpu["postgres"])) / 100.0
        return 1e6 * busy_cores / self.events_per_s

    @property
    def anonymize_share(self) -> float | None:
        anonymize, end_to_end = self.anonymize_us_per_event, self.end_to_end_us_per_event
        if anonymize is None or not end_to_end:
            return None
        return anonymize / end_to_end

    @property
    def ratio(self) -> float:
        return self.events_per_s / self.copy_rows_per_s if self.copy_rows_per_s else 0.0

    def failures(self) -> list[str]:
        reasons = []
        if self.ratio < self.min_ratio:
            reasons.append(f"ratio {self.ratio:.3f} < {self.min_ratio}")
        if self.errors:
            reasons.append(f"{sum(self.errors.values())} requests failed")
        if self.db_events < self.acked_events:
            reasons.append(f"{self.acked_events - self.db_events} acknowledged events missing")
        if self.events_per_s <= 0:
            reasons.append("nothing was committed")
        if self.consumer_stored < self.consumer_messages:
            reasons.append(
                f"consumer stored {self.consumer_stored} of {self.consumer_messages} messages"
            )
        if self.beam_stored < self.beam_events:
            reasons.append(f"Beam backfill stored {self.beam_stored} of {self.beam_events} events")
        share = self.anonymize_share
        if share is not None and share > self.max_anonymize_share:
            reasons.append(f"anonymization share {share:.3f} > {self.max_anonymize_share}")
        return reasons

    @property
    def passed(self) -> bool:
        return not self.failures()

    def as_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "ratio": self.ratio,
            "anonymize_us_per_event": self.anonymize_us_per_event,
            "end_to_end_us_per_event": self.end_to_end_us_per_event,
            "anonymize_share": self.anonymize_share,
            "contract_us_per_event": self.contract_us_per_event,
            "passed": self.passed,
        }


def cpu_figures(use: CpuUse | None, client_cpu_s: float, seconds: float) -> dict[str, Any]:
    figures: dict[str, Any] = {"clients": 100.0 * client_cpu_s / seconds}
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


def render(result: Result) -> str:
    setup = result.setup
    cpu = result.cpu_pct
    lines = [
        "",
        "── Sluice bench ─────────────────────────────────────────────",
        f"setup          {setup['clients']} clients in {setup['client_processes']} processes, "
        f"{setup['batch']}-event batches, {setup['workers']} workers, "
        f"{setup['duration_s']:g} s after {setup['warmup_s']:g} s warm-up",
        f"server knobs   {setup['server']}",
        f"database       {setup['database']}",
        f"committed      {result.events_per_s:,.0f} events/s "
        f"({result.requests_per_s:,.0f} requests/s)",
        f"ack latency    p50 {result.p50_ms:.1f} ms   p90 {result.p90_ms:.1f} ms   "
        f"p99 {result.p99_ms:.1f} ms   max {result.max_ms:.1f} ms",
        f"COPY ceiling   {result.copy_rows_per_s:,.0f} rows/s "
        f"({setup['copy_rows']:,} rows, one stream)",
        f"ratio          {result.ratio:.3f}   (required: ≥ {result.min_ratio})",
        *_consumer_lines(result),
        *_beam_lines(result),
        *_tracing_lines(result),
        f"verified       {result.acked_events:,} events acknowledged as stored, "
        f"{result.db_events:,} rows in events",
    ]
    share = result.anonymize_share
    if share is not None:
        lines.append(
            f"anonymization  {result.anonymize_us_per_event:.1f} µs/event of "
            f"{result.end_to_end_us_per_event:.1f} µs end-to-end CPU (service + postgres): "
            f"{share:.3f}   (required: ≤ {result.max_anonymize_share})"
        )
    contract, end_to_end = result.contract_us_per_event, result.end_to_end_us_per_event
    if contract is not None and end_to_end:
        lines.append(
            f"contracts      {contract:.1f} µs/event checking the contract and quality rules "
            f"of {end_to_end:.1f} µs end-to-end CPU: {contract / end_to_end:.3f}"
        )
    if result.errors:
        lines.append(f"errors         {dict(sorted(result.errors.items()))}")
    if "service" in cpu:
        workers = " + ".join(f"{pct:.0f}" for pct in cpu["service_workers"])
        lines.append(
            f"CPU (% core)   clients {cpu['clients']:.0f}   service {cpu['service']:.0f} "
            f"(workers {workers})   postgres {cpu['postgres']:.0f}   other {cpu['other']:.0f}   "
            f"machine {cpu['machine_busy']:.0f} of {cpu['machine_capacity']:.0f}"
        )
        if cpu["other"] > OTHER_CPU_WARNING:
            lines.append(
                "note           other processes kept the machine busy during the window: "
                "figures may be low"
            )
    verdict = "PASS" if result.passed else "FAIL: " + "; ".join(result.failures())
    lines += [f"result         {verdict}", "─" * 61]
    return "\n".join(lines)


def _consumer_lines(result: Result) -> list[str]:
    if result.consumer_events_per_s is None:
        return []
    return [
        f"consumer       {result.consumer_events_per_s:,.0f} events/s from a pre-filled "
        f"RabbitMQ queue ({result.consumer_messages:,} messages, "
        f"{result.consumer_processes} consumer processes)",
        _ratios(result.consumer_events_per_s, result),
    ]


def _beam_lines(result: Result) -> list[str]:
    if result.beam_rows_per_s is None:
        return []
    return [
        f"beam           {result.beam_rows_per_s:,.0f} rows/s, DirectRunner backfill of "
        f"{result.beam_events:,} archived events ({result.beam_workers} worker processes, "
        "start-up included)",
        _ratios(result.beam_rows_per_s, result),
    ]


def _ratios(rate: float, result: Result) -> str:
    """A secondary figure beside the COPY ceiling and the HTTP figure."""
    ceiling = result.copy_rows_per_s or math.nan
    return (
        f"               ratio {rate / ceiling:.3f} to COPY, "
        f"{rate / (result.events_per_s or math.nan):.2f} of HTTP"
    )


def _tracing_lines(result: Result) -> list[str]:
    figures = result.tracing_events_per_s
    if not figures or not figures.get("off"):
        return []
    off = figures["off"]
    costs = "   ".join(
        f"{name} {rate:,.0f} ({100 * (off - rate) / off:+.1f} % cost)"
        for name, rate in figures.items()
        if name != "off"
    )
    return [f"tracing        off {off:,.0f} events/s   sampled {costs}"]


def write_json(result: Result) -> tuple[Path, str]:
    """Write `bench/results/latest.json`; return its path and the one-line JSON."""
    line = orjson.dumps(result.as_json()).decode()
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / "latest.json"
    path.write_bytes(orjson.dumps(result.as_json(), option=orjson.OPT_INDENT_2) + b"\n")
    return path, line
