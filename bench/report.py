"""The verdict: one row per figure of issue 18's table (figure, target, PASS/FAIL), the
details behind them, and the JSON written beside them (`bench/results/`).

A row whose measurement did not run (`--sections`, RabbitMQ unreachable, no scaling run
yet) says SKIP with the reason; INFO rows carry figures without a target. The run passes
when no row FAILs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import orjson

from bench.consumer import ConsumerRun
from bench.copy_ceiling import CopyResult
from bench.measure import OpenLoop, Single, Throughput

RESULTS_DIR = Path(__file__).resolve().parent / "results"
# Percent of a core used by neither the clients, the service nor PostgreSQL (the kernel's
# share of loopback traffic stays well below): beyond it, another job shared the machine.
OTHER_CPU_WARNING = 20.0
MAX_RSS_MIB = 300.0
REFUSALS = ("429", "503")


class Verdict(StrEnum):
    PASS = "PASS"  # noqa: S105 - a verdict, not a password
    FAIL = "FAIL"
    SKIP = "SKIP"
    INFO = "INFO"


@dataclass(frozen=True, slots=True)
class Row:
    number: str  # the row of issue 18's table it answers
    figure: str
    value: str
    target: str
    verdict: Verdict
    numbers: dict[str, float | None] = field(default_factory=dict)  # for the JSON


def _check(ok: bool) -> Verdict:
    return Verdict.PASS if ok else Verdict.FAIL


def _skip(number: str, figure: str, target: str, why: str) -> Row:
    return Row(number, figure, why, target, Verdict.SKIP)


@dataclass(slots=True)
class Run:
    """Everything one `python -m bench` measured; None: that part did not run."""

    settings: dict[str, Any]
    overload_s: float = 60.0
    copy: CopyResult | None = None
    sluice: Throughput | None = None
    competent: Throughput | None = None
    naive: Throughput | None = None
    single_sluice: Single | None = None
    single_bare: Single | None = None
    consumer: ConsumerRun | None = None  # one-event messages
    consumer_batch: ConsumerRun | None = None  # `--batch`-event messages: row 5's verdict
    latency: OpenLoop | None = None
    overload: OpenLoop | None = None
    burst: Throughput | None = None
    scaling: dict[str, Any] | None = None  # bench/results/scaling.json, when there is one
    tracing_events_per_s: dict[str, float] | None = None
    # (acknowledged as stored, rows found) by service: every acknowledged event is a row.
    verified: dict[str, tuple[int, int]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _us(value: float | None) -> str:
    return "—" if value is None or math.isnan(value) else f"{value:.1f}"


def copy_rows(run: Run) -> list[Row]:
    """Row 1: HTTP ÷ COPY, each party's CPU per event, the ratio on a database's own cores."""
    figure = "batched HTTP committed events/s ÷ raw COPY rows/s"
    if run.sluice is None or run.copy is None:
        return [_skip("1", figure, "≥ 0.35", "not measured (--sections)")]
    http, copy = run.sluice, run.copy
    ratio = http.events_per_s / copy.rows_per_s
    service, postgres, clients = (http.us_per_event(p) for p in ("service", "postgres", "clients"))
    rows = [
        Row(
            "1",
            figure,
            f"{ratio:.3f} ({http.events_per_s:,.0f} ÷ {copy.rows_per_s:,.0f})",
            "≥ 0.35",
            _check(ratio >= 0.35),
            {"ratio": ratio, "events_per_s": http.events_per_s, "copy_rows_per_s": copy.rows_per_s},
        ),
        Row(
            "1",
            "CPU µs per event: service · PostgreSQL · load generator (COPY: PostgreSQL · client)",
            f"{_us(service)} · {_us(postgres)} · {_us(clients)}   "
            f"(COPY {_us(copy.postgres_us_per_row)} · {_us(copy.client_us_per_row)} per row)",
            "—",
            Verdict.INFO,
            {"service_us": service, "postgres_us": postgres, "clients_us": clients},
        ),
    ]
    dedicated = dedicated_ratio(http, copy)
    rows.append(
        Row(
            "1",
            "the same ratio with PostgreSQL on cores of its own (docs/benchmarks.md: formula)",
            "—" if dedicated is None else f"{dedicated:.3f}",
            "—",
            Verdict.INFO,
            {"dedicated_ratio": dedicated},
        )
    )
    return rows


def dedicated_ratio(http: Throughput, copy: CopyResult) -> float | None:
    """HTTP ÷ COPY when PostgreSQL runs on C cores of its own and the service and its
    clients (or the COPY client) on C others, each party CPU-bound:
    rate = C / max(PostgreSQL µs per event, service µs + generator µs per event), so
    ratio = max(COPY's PostgreSQL µs/row, COPY client µs/row)
            ÷ max(HTTP's PostgreSQL µs/event, service + load generator µs/event)."""
    parts = [http.us_per_event(p) for p in ("postgres", "service", "clients")]
    if copy.postgres_us_per_row is None or any(p is None or math.isnan(p) for p in parts):
        return None
    postgres, service, clients = (float(p) for p in parts if p is not None)
    return max(copy.postgres_us_per_row, copy.client_us_per_row) / max(postgres, service + clients)


def cost_rows(run: Run) -> list[Row]:
    """Row 2: the service's CPU per event; PostgreSQL's per event against COPY's per row."""
    service_figure = "service CPU µs per event (50-event requests, default policy, contracts on)"
    postgres_figure = "PostgreSQL CPU µs per event ÷ COPY's PostgreSQL µs per row"
    if run.sluice is None:
        return [
            _skip("2", service_figure, "≤ 20 µs", "not measured"),
            _skip("2", postgres_figure, "≤ 2x", "not measured"),
        ]
    service = run.sluice.us_per_event("service")
    rows = [
        Row(
            "2",
            service_figure,
            f"{_us(service)} µs",
            "≤ 20 µs",
            _check(service is not None and service <= 20),
            {"service_us": service},
        )
    ]
    postgres = run.sluice.us_per_event("postgres")
    per_row = run.copy.postgres_us_per_row if run.copy else None
    if postgres is None or not per_row:
        rows.append(_skip("2", postgres_figure, "≤ 2x", "PostgreSQL's processes not visible"))
        return rows
    times = postgres / per_row
    rows.append(
        Row(
            "2",
            postgres_figure,
            f"{times:.1f} x ({postgres:.1f} ÷ {per_row:.1f} µs)",
            "≤ 2x",
            _check(times <= 2),
            {"times": times, "postgres_us": postgres, "copy_postgres_us": per_row},
        )
    )
    return rows


def peer_rows(run: Run) -> list[Row]:
    """Row 3: Sluice against the competent and the naive peer, same load, same sitting."""
    rows = []
    for name, peer, target in (("competent", run.competent, 2.0), ("naive", run.naive, 30.0)):
        figure = f"batched HTTP events/s ÷ the {name} peer's (bench/peers/{name}.py)"
        if run.sluice is None or peer is None or peer.events_per_s <= 0:
            rows.append(_skip("3", figure, f"≥ {target:g}x", "not measured"))
            continue
        times = run.sluice.events_per_s / peer.events_per_s
        rows.append(
            Row(
                "3",
                figure,
                f"{times:.2f} x ({run.sluice.events_per_s:,.0f} ÷ {peer.events_per_s:,.0f})",
                f"≥ {target:g}x",
                _check(times >= target),
                {"times": times, "peer_events_per_s": peer.events_per_s},
            )
        )
    return rows


def single_row(run: Run) -> Row:
    figure = "single-event HTTP requests/s ÷ bare FastAPI parsing the same body (wrk)"
    sluice, bare = run.single_sluice, run.single_bare
    if sluice is None or bare is None or bare.requests_per_s <= 0:
        return _skip("4", figure, "≥ 0.5", "not measured (wrk missing?)")
    ratio = sluice.requests_per_s / bare.requests_per_s
    return Row(
        "4",
        figure,
        f"{ratio:.2f} ({sluice.requests_per_s:,.0f} ÷ {bare.requests_per_s:,.0f})",
        "≥ 0.5",
        _check(ratio >= 0.5 and not sluice.errors),
        {"ratio": ratio, "sluice_per_s": sluice.requests_per_s, "bare_per_s": bare.requests_per_s},
    )


def consumer_rows(run: Run) -> list[Row]:
    """Row 5, judged like for like: messages carrying `--batch` events, as the HTTP
    requests do; the one-event-message figure beside it, INFO."""
    figure = "consumer events/s ÷ batched HTTP events/s, same number of processes"
    rows = [
        _consumer_row(run, run.consumer_batch, f"{figure}: batch messages, like HTTP's", True),
        _consumer_row(run, run.consumer, f"{figure}: one-event messages", False),
    ]
    return [row for row in rows if row is not None]


def _consumer_row(run: Run, consumer: ConsumerRun | None, figure: str, judged: bool) -> Row | None:
    target = "≥ 1.0" if judged else "—"
    if consumer is None or run.sluice is None:
        why = "not measured (RabbitMQ unreachable?)"
        return _skip("5", figure, target, why) if judged else None
    ratio = consumer.events_per_s / run.sluice.events_per_s
    complete = consumer.stored >= consumer.events
    note = "" if complete else f"; stored {consumer.stored:,} of {consumer.events:,}"
    return Row(
        "5",
        figure,
        f"{ratio:.2f} ({consumer.events_per_s:,.0f} ÷ {run.sluice.events_per_s:,.0f}, "
        f"{consumer.processes} each; {consumer.label}, consumer "
        f"{_us(consumer.us_per_event)} µs CPU per event){note}",
        target,
        _check(ratio >= 1.0 and complete) if judged else Verdict.INFO,
        {
            "ratio": ratio,
            "consumer_events_per_s": consumer.events_per_s,
            "consumer_us_per_event": consumer.us_per_event,
            "events_per_message": consumer.events_per_message,
        },
    )


def latency_rows(run: Run) -> list[Row]:
    """Row 6: p50 and p99 from due time, open loop at half the batched maximum."""
    latency = run.latency
    if latency is None:
        return [
            _skip("6", "p50 ack latency at half the maximum throughput", "≤ 10 ms", "not run"),
            _skip("6", "p99 ack latency at half the maximum throughput", "≤ 50 ms", "not run"),
        ]
    failed = sum(latency.statuses.values()) - latency.count("200")
    trouble = f"; {failed} not 200, {latency.shed} shed" if failed or latency.shed else ""
    where = f"open loop, {latency.planned_per_s:,.0f} requests/s{trouble}"
    return [
        Row(
            "6",
            f"p{pct} ack latency at half the maximum throughput ({where})",
            f"{value:.1f} ms",
            f"≤ {limit} ms",
            _check(value <= limit and not trouble),
            {f"p{pct}_ms": value},
        )
        for pct, value, limit in ((50, latency.p50_ms, 10), (99, latency.p99_ms, 50))
    ]


def overload_row(run: Run) -> Row:
    overload = run.overload
    figure = f"peak RSS per worker over {run.overload_s:g} s at 5 x the sustainable load"
    target = f"< {MAX_RSS_MIB:.0f} MiB, excess 429/503"
    if overload is None or not overload.rss_peak_mib:
        return _skip("7", figure, target, "not run")
    peak = max(overload.rss_peak_mib.values())
    refused, ok = overload.count(*REFUSALS), overload.count("200")
    other = sum(overload.statuses.values()) - refused - ok
    workers = " · ".join(f"{mib:.0f}" for mib in overload.rss_peak_mib.values())
    return Row(
        "7",
        figure,
        f"{peak:.0f} MiB ({workers}); {ok:,} stored, {refused:,} refused, {other:,} other, "
        f"{overload.shed:,} shed by the client",
        target,
        # Shed: the client gave up waiting (every connection held unanswered), so the
        # excess was queued, not refused.
        _check(peak < MAX_RSS_MIB and other == 0 and overload.shed == 0),
        {"peak_mib": peak, "refused": refused, "other": other, "stored": ok},
    )


def burst_row(run: Run) -> Row:
    figure = "busiest worker's share of the workers' CPU, 32 connections opened at once"
    share = run.burst.busiest_worker_share if run.burst else None
    if run.burst is None or share is None:
        return _skip("8", figure, "≤ 60 %", "not run")
    split = " + ".join(f"{pct:.0f}" for pct in run.burst.cpu["service_workers"])
    return Row(
        "8",
        figure,
        f"{100 * share:.0f} % (workers {split} % of a core; "
        f"{run.burst.events_per_s:,.0f} events/s)",
        "≤ 60 %",
        _check(share <= 0.6),
        {"share": share, "events_per_s": run.burst.events_per_s},
    )


def scaling_row(run: Run) -> Row:
    figure = "scaling: 1/2/4 workers, batch size and delay swept (make bench-scaling)"
    target = "defaults at the knee"
    data = run.scaling
    if not data:
        return _skip("9", figure, target, "no bench/results/scaling.json: run make bench-scaling")
    knees = data["knees"]
    value = (
        "workers "
        + " / ".join(f"{w['events_per_s']:,.0f}" for w in data["workers"])
        + "".join(
            f"; {knob} knee {found['knee']:g} (default {found['default']:g})"
            for knob, found in knees.items()
        )
        + f"; {data['when']}"
    )
    return Row("9", figure, value, target, _check(all(k["at_knee"] for k in knees.values())))


def integrity_row(run: Run) -> Row:
    """Every event acknowledged as stored is a row; no request of the batched runs failed."""
    parts, ok = [], True
    for name, (acked, found) in run.verified.items():
        parts.append(f"{name} {acked:,} acked, {found:,} rows")
        ok &= found >= acked
    failed = sum(
        sum(t.errors.values()) for t in (run.sluice, run.competent, run.naive, run.burst) if t
    )
    if failed:
        parts.append(f"{failed} batched requests failed")
    if not parts:
        return _skip("✓", "acknowledged = stored", "every ack a row", "nothing measured")
    return Row(
        "✓",
        "exactly-once: rows ≥ events acknowledged as stored",
        "; ".join(parts),
        "every ack a row",
        _check(ok and not failed),
    )


def stage_rows(run: Run) -> list[Row]:
    """The anonymization ceiling (issue 17) and the contract cost, per committed event."""
    if run.sluice is None:
        return []
    stages, http = run.sluice.stage_us, run.sluice
    end_to_end = sum(http.us_per_event(p) or 0.0 for p in ("service", "postgres")) or math.nan
    rows = []
    if (anonymize := stages.get("anonymize")) is not None:
        share = anonymize / end_to_end
        rows.append(
            Row(
                "A",
                "anonymization µs per event ÷ end-to-end CPU (service + PostgreSQL)",
                f"{share:.3f} ({anonymize:.1f} of {end_to_end:.1f} µs)",
                "≤ 0.1",
                _check(share <= 0.1),
                {"share": share, "anonymize_us": anonymize},
            )
        )
    if (contract := stages.get("contract")) is not None:
        rows.append(
            Row(
                "C",
                "contract and quality checks µs per event ÷ end-to-end CPU",
                f"{contract / end_to_end:.3f} ({contract:.1f} of {end_to_end:.1f} µs)",
                "—",
                Verdict.INFO,
                {"contract_us": contract},
            )
        )
    return rows


def generator_row(run: Run) -> Row:
    """The load generator's CPU, so that nobody mistakes its limit for the service's."""
    parts = []
    if run.sluice is not None:
        clients = float(run.sluice.cpu.get("clients", 0.0))
        busy = float(run.sluice.cpu.get("machine_busy", 0.0)) or math.nan
        parts.append(f"batched: aiohttp {clients:.0f} % of a core ({clients / busy:.0%} of busy)")
    if run.single_sluice is not None and run.single_bare is not None:
        parts.append(
            f"single: wrk {run.single_sluice.generator_pct:.0f} % (Sluice), "
            f"{run.single_bare.generator_pct:.0f} % (bare)"
        )
    return Row("G", "load generator's CPU", "; ".join(parts) or "—", "not the limit", Verdict.INFO)


def rows(run: Run) -> list[Row]:
    return [
        *copy_rows(run),
        *cost_rows(run),
        *peer_rows(run),
        single_row(run),
        *consumer_rows(run),
        *latency_rows(run),
        overload_row(run),
        burst_row(run),
        scaling_row(run),
        integrity_row(run),
        *stage_rows(run),
        generator_row(run),
    ]


def passed(table: list[Row]) -> bool:
    return all(row.verdict is not Verdict.FAIL for row in table)


def render_table(table: list[Row]) -> str:
    """A Markdown table: readable in a terminal, pasted as is into docs/benchmarks.md."""
    lines = ["| # | figure | measured | target | verdict |", "|---|---|---|---|---|"]
    lines += [
        f"| {row.number} | {row.figure} | {row.value} | {row.target} | {row.verdict} |"
        for row in table
    ]
    return "\n".join(lines)


def render_details(run: Run) -> str:
    """What lies behind the rows: the settings in force and each run's own figures."""
    lines = ["", "── Sluice bench: settings in force ──", *render_settings(run)]
    lines += ["", "── runs ──", *render_runs(run)]
    return "\n".join(lines)


def render_settings(run: Run) -> list[str]:
    return [f"{name:<16} {value}" for name, value in run.settings.items()]


def render_runs(run: Run) -> list[str]:
    lines = []
    for name, figures in (
        ("sluice", run.sluice),
        ("competent peer", run.competent),
        ("naive peer", run.naive),
        ("32 at once", run.burst),
    ):
        if figures is not None:
            lines.append(_throughput_line(name, figures))
    if run.copy is not None:
        lines.append(
            f"{'COPY':<16} {run.copy.rows_per_s:,.0f} rows/s ({run.copy.rows:,} rows, one "
            f"stream); PostgreSQL {_us(run.copy.postgres_us_per_row)} µs/row, "
            f"client {_us(run.copy.client_us_per_row)} µs/row"
        )
    for name, single in (("single: sluice", run.single_sluice), ("single: bare", run.single_bare)):
        if single is not None:
            lines.append(
                f"{name:<16} {single.requests_per_s:,.0f} requests/s, p50 {single.p50_ms:.1f} ms "
                f"p99 {single.p99_ms:.1f} ms, errors {single.errors or 'none'}; "
                + _cpu_text(single.cpu)
            )
    for name, loop in (("latency (open)", run.latency), ("overload (open)", run.overload)):
        if loop is not None:
            lines.append(
                f"{name:<16} planned {loop.planned_per_s:,.0f} requests/s, sent "
                f"{loop.sent_per_s:,.0f}/s, p50 {loop.p50_ms:.1f} ms p99 {loop.p99_ms:.1f} ms, "
                f"answers {dict(sorted(loop.statuses.items()))}, shed {loop.shed}; "
                + _cpu_text(loop.cpu)
            )
    for consumer in (run.consumer, run.consumer_batch):
        if consumer is not None:
            lines.append(
                f"{'consumer':<16} {consumer.events_per_s:,.0f} events/s, "
                f"{consumer.messages:,} {consumer.label}, {consumer.processes} processes, "
                f"CPU {_us(consumer.us_per_event)} µs per event "
                f"({_us(consumer.us_per_event * consumer.events_per_message)} per message)"
            )
    if run.tracing_events_per_s and (off := run.tracing_events_per_s.get("off")):
        lines.append(
            f"{'tracing':<16} "
            + "   ".join(
                f"{k} {v:,.0f} ({100 * (off - v) / off:+.1f} %)"
                for k, v in run.tracing_events_per_s.items()
            )
        )
    lines += run.notes
    return lines


def _throughput_line(name: str, figures: Throughput) -> str:
    return (
        f"{name:<16} {figures.events_per_s:,.0f} events/s ({figures.requests_per_s:,.0f} "
        f"requests/s), closed-loop p50 {figures.p50_ms:.1f} ms p99 {figures.p99_ms:.1f} ms"
        f"{', errors ' + str(figures.errors) if figures.errors else ''}; " + _cpu_text(figures.cpu)
    )


def _cpu_text(cpu: dict[str, Any]) -> str:
    if "service" not in cpu:
        return f"CPU (% core) clients {cpu.get('clients', 0):.0f}"
    workers = " + ".join(f"{pct:.0f}" for pct in cpu["service_workers"])
    text = (
        f"CPU (% core) clients {cpu['clients']:.0f} service {cpu['service']:.0f} "
        f"(workers {workers}) postgres {cpu['postgres']:.0f} other {cpu['other']:.0f} "
        f"machine {cpu['machine_busy']:.0f}/{cpu['machine_capacity']:.0f}"
    )
    if cpu["other"] > OTHER_CPU_WARNING:
        text += " [other jobs shared the machine: figures may be low]"
    return text


def as_json(run: Run, table: list[Row]) -> dict[str, Any]:
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "passed": passed(table),
        "rows": [asdict(row) for row in table],
        **asdict(run),
    }


def write_json(document: dict[str, Any], folder: Path = RESULTS_DIR) -> Path:
    """`latest.json` and a copy named by time in `folder`; returns the latter's path."""
    folder.mkdir(parents=True, exist_ok=True)
    data = orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS) + b"\n"
    stamp = document["when"].replace(":", "").replace("+0000", "Z")
    path = folder / f"bench-{stamp}.json"
    path.write_bytes(data)
    (folder / "latest.json").write_bytes(data)
    return path
