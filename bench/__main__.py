"""`python -m bench` (`make bench`): issue 18's table in one run; see bench/README.md."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from app.config import BatchSettings, DatabaseSettings, PrivacySettings, Settings
from bench import database, scaling, wrk
from bench.anonymization import address_line
from bench.beam import measure_beam
from bench.consumer import broker_url, measure_consumer
from bench.copy_ceiling import measure_copy
from bench.load import plan_from
from bench.measure import Throughput, closed_loop, open_loop, single_events
from bench.openloop import RatePlan
from bench.peers import competent, naive
from bench.report import (
    RESULTS_DIR,
    Row,
    Run,
    as_json,
    passed,
    render_details,
    render_runs,
    render_settings,
    render_table,
    rows,
    write_json,
)
from bench.server import CONTRACTS_DIR, PROJECT_ROOT, Service, running_peer, running_service
from bench.tracing import Sample, measure, receiver_installed

SECTIONS = ("copy", "sluice", "single", "burst", "latency", "overload", "peers", "consumer")
# `--quick`: every duration and size cut, for trying a change (the figures are noisier).
QUICK = {
    "duration": 5.0,
    "warmup": 1.0,
    "naive_duration": 3.0,
    "single_duration": 3.0,
    "burst_duration": 4.0,
    "latency_duration": 5.0,
    "overload_duration": 10.0,
    "copy_rows": 100_000,
    "consumer_messages": 10_000,
    "consumer_batch_messages": 1_000,
    "tracing_duration": 0.0,
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    add = parser.add_argument
    add("--quick", action="store_true", help="short runs for development (noisier figures)")
    add("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}")
    add("--duration", type=float, default=20.0, help="measured s: Sluice and competent peer")
    add("--warmup", type=float, default=2.0, help="unmeasured seconds before each closed loop")
    add("--clients", type=int, default=32, help="concurrent clients (closed loops)")
    add("--client-processes", type=int, default=1, help="processes the clients are spread over")
    add("--batch", type=int, default=50, help="events per request")
    add("--workers", type=int, default=2, help="worker processes (Sluice and peers)")
    add("--naive-duration", type=float, default=10.0, help="measured s: naive peer")
    add("--single-duration", type=float, default=10.0, help="measured s per single-event run")
    add("--single-connections", type=int, default=64, help="wrk connections, single events")
    add("--burst-duration", type=float, default=10.0, help="measured s: 32 connections at once")
    add("--latency-duration", type=float, default=15.0, help="measured s: open loop at half max")
    add("--latency-connections", type=int, default=256, help="connections at half max")
    add("--overload-duration", type=float, default=60.0, help="measured s: open loop at 5 x max")
    add("--overload-connections", type=int, default=2000, help="connections at 5 x max")
    add("--overload-processes", type=int, default=2, help="load processes at 5 x max")
    add("--copy-rows", type=int, default=200_000, help="rows for the ceiling")
    add("--copy-chunk", type=int, default=5_000, help="rows per COPY")
    add("--consumer-messages", type=int, default=50_000, help="pre-filled messages (0: skip)")
    add(
        "--consumer-batch-messages",
        type=int,
        default=4_000,
        help="pre-filled --batch-event messages, row 5's like-for-like figure (0: skip)",
    )
    add("--consumers", type=int, default=0, help="consumer processes (0: as many as --workers)")
    add("--beam-events", type=int, default=0, help="archived events for Beam (0: skip)")
    add("--write-docs", action="store_true", help="put the table into docs/benchmarks.md")
    add("--results", type=Path, default=RESULTS_DIR, help="folder for the JSON figures")
    add("--tracing-duration", type=float, default=8.0, help="s per tracing setting (0: skip)")
    return parser


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.quick:  # only where the command line left the default
        for name, value in QUICK.items():
            if getattr(args, name) == parser.get_default(name):
                setattr(args, name, value)
    args.sections = {part.strip() for part in args.sections.split(",") if part.strip()}
    if unknown := args.sections - set(SECTIONS):
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    return args


def _settings(args: argparse.Namespace, where: str, admin: str) -> dict[str, Any]:
    """The settings in force: the load, the service's knobs as it will read them, the
    machine, the database server and the commit."""
    batch, db, settings = BatchSettings(), DatabaseSettings(), Settings()
    overrides = sorted(f"{k}={v}" for k, v in os.environ.items() if k.startswith("SLUICE_"))
    return {
        "load": f"{args.clients} clients, {args.batch}-event requests, {args.workers} workers, "
        f"{args.duration:g} s after {args.warmup:g} s warm-up",
        "service": f"python -m app serve --workers {args.workers}; log level "
        f"{settings.log_level}; policy {PrivacySettings().policy_path.name}; contracts "
        f"{os.environ.get('SLUICE_CONTRACTS_DIR', CONTRACTS_DIR.relative_to(PROJECT_ROOT))}",
        "batch": f"max_size={batch.max_size} max_delay_ms={batch.max_delay_ms:g} "
        f"write_concurrency={batch.write_concurrency} buffer_max_events="
        f"{batch.buffer_max_events}; db pool_max_size={db.pool_max_size}",
        "environment": " ".join(overrides) or "no SLUICE_* overrides",
        "machine": _machine(),
        "database": f"{where}, PostgreSQL {database.server_version(admin)}",
        "commit": _commit(),
    }


def _machine() -> str:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next(
        (ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if "model name" in ln), "?"
    )
    meminfo = Path("/proc/meminfo").read_text().split() if Path("/proc/meminfo").exists() else []
    memory = f"{int(meminfo[1]) / 1024**2:.0f} GiB" if len(meminfo) > 1 else "?"
    return f"{os.cpu_count()} cores ({model}), {memory}"


def _commit() -> str:
    result = subprocess.run(
        ["git", "describe", "--always", "--dirty"],  # noqa: S607 - git on PATH
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() or "?"


def _say(text: str) -> None:
    print(f"bench: {text}", flush=True)


def _sluice(args: argparse.Namespace, run: Run, url: str, admin: str) -> None:
    """Every section that loads Sluice, on one running service, then the rows check."""
    acked = 0
    with running_service(url, workers=args.workers) as service:
        if "sluice" in args.sections:
            _say(f"Sluice, batched: {args.clients} clients, {args.duration:g} s")
            run.sluice = closed_loop(
                service,
                plan_from(args, service.base_url, args.duration),
                postgres_url=url,
                stages=True,
            )
            acked += run.sluice.acked_events
        if "single" in args.sections and wrk.available():
            _say(f"Sluice, single events: wrk, {args.single_connections} connections")
            run.single_sluice = single_events(
                service,
                connections=args.single_connections,
                duration_s=args.single_duration,
                source_prefix=f"/bench/{uuid.uuid4().hex[:8]}/single",
                postgres_url=url,
            )
            acked += run.single_sluice.ok
        if "burst" in args.sections:
            _say(f"Sluice, {args.clients} connections opened at once, {args.burst_duration:g} s")
            plan = plan_from(args, service.base_url, args.burst_duration, stagger=False)
            run.burst = closed_loop(service, plan, postgres_url=url)
            acked += run.burst.acked_events
        acked += _open_loops(args, run, service, url, admin)
    run.verified["sluice"] = (acked, database.count_events(url, source_prefix="/bench/"))


def _open_loops(args: argparse.Namespace, run: Run, service: Service, url: str, admin: str) -> int:
    """Half and five times the batched maximum, open loop; the events they got stored."""
    if run.sluice is None or run.sluice.requests_per_s <= 0:
        return 0
    acked = 0
    maximum = run.sluice.requests_per_s
    for section, factor, seconds, connections, processes in (
        ("latency", 0.5, args.latency_duration, args.latency_connections, 1),
        (
            "overload",
            5.0,
            args.overload_duration,
            args.overload_connections,
            args.overload_processes,
        ),
    ):
        if section not in args.sections:
            continue
        # The runs before wrote millions of rows: their checkpoint must not land inside
        # this window (as COPY's and the closed loop's windows, each starts flushed).
        database.checkpoint(admin)
        _say(f"Sluice, open loop at {factor:g} x {maximum:,.0f} requests/s, {seconds:g} s")
        plan = RatePlan(
            base_url=service.base_url,
            rate=factor * maximum,
            batch=args.batch,
            connections=connections,
            max_outstanding=connections,
            warmup_s=args.warmup,
            duration_s=seconds,
            source=f"/bench/{uuid.uuid4().hex[:8]}/open",
            processes=processes,
        )
        figures = open_loop(service, plan, postgres_url=url, watch_rss=section == "overload")
        setattr(run, section, figures)
        acked += figures.acked_events
    return acked


def _peers(args: argparse.Namespace, run: Run, admin: str) -> None:
    """The bare endpoint (single events), then the competent and the naive peer (batched),
    each on a database of its own."""
    if "single" in args.sections and wrk.available():
        with running_peer("bare", "", workers=args.workers) as bare:
            _say("bare FastAPI, single events: wrk")
            run.single_bare = single_events(
                bare,
                connections=args.single_connections,
                duration_s=args.single_duration,
                source_prefix="/bench/bare",
                postgres_url=None,
            )
    if "peers" not in args.sections:
        return
    for name, module, seconds in (
        ("competent", competent, args.duration),
        ("naive", naive, args.naive_duration),
    ):
        with database.scratch_database(admin, migrate=False, label=name) as url:
            database.run(module.create_schema(url))
            with running_peer(name, url, workers=args.workers) as peer:
                _say(f"{name} peer, batched: {args.clients} clients, {seconds:g} s")
                figures = closed_loop(
                    peer, plan_from(args, peer.base_url, seconds), postgres_url=url
                )
            setattr(run, name, figures)
            found = database.count_events(url, table="peer_events", source_prefix="/bench/")
            run.verified[name] = (figures.acked_events, found)


def _consume(args: argparse.Namespace, run: Run, url: str, admin: str) -> None:
    """Row 5: one-event messages (INFO), then `--batch`-event messages (the verdict)."""
    if "consumer" not in args.sections:
        return
    plans = [(1, args.consumer_messages), (args.batch, args.consumer_batch_messages)]
    if not any(messages > 0 for _, messages in plans):
        return
    broker = broker_url()
    if broker is None:
        _say("RabbitMQ unreachable; no consumer figure")
        return
    processes = args.consumers or args.workers
    for events_per_message, messages in plans:
        if messages <= 0:
            continue
        database.checkpoint(admin)  # each window starts flushed, as the others do
        _say(
            f"{processes} consumers, {messages:,} messages of {events_per_message} "
            "event(s) pre-filled"
        )
        figures = measure_consumer(
            broker,
            url,
            messages=messages,
            processes=processes,
            run_tag=uuid.uuid4().hex[:8],
            events_per_message=events_per_message,
        )
        if events_per_message == 1:
            run.consumer = figures
        else:
            run.consumer_batch = figures
        run.verified[f"consumer ({figures.label})"] = (figures.acked, figures.stored)


def _tracing(args: argparse.Namespace, run: Run, url: str) -> None:
    if args.tracing_duration <= 0:
        return

    def measured(extra_env: dict[str, str]) -> Sample:
        with running_service(url, workers=args.workers, extra_env=extra_env) as service:
            figures: Throughput = closed_loop(
                service, plan_from(args, service.base_url, args.tracing_duration), postgres_url=None
            )
        return Sample(figures.events_per_s, figures.us_per_event("service"))

    if not receiver_installed():
        run.notes.append("tracing          no OTLP receiver (make tools-observability)")
        return
    _say(f"tracing off / 100 % / default sampling, twice, {args.tracing_duration:g} s each")
    run.tracing_events_per_s = measure(measured).events_per_s


def _run(args: argparse.Namespace) -> Run:
    admin, where = database.admin_url()
    run = Run(
        settings=_settings(args, where, admin),
        overload_s=args.overload_duration,
        scaling=scaling.latest(),
    )
    _say(f"PostgreSQL ({where}); creating a scratch database")
    with database.scratch_database(admin) as url:
        if "copy" in args.sections:
            database.checkpoint(admin)
            _say(f"COPY ceiling, {args.copy_rows:,} rows")
            run.copy = measure_copy(url, rows=args.copy_rows, chunk=args.copy_chunk)
        database.checkpoint(admin)
        _sluice(args, run, url, admin)
        _peers(args, run, admin)
        _consume(args, run, url, admin)
        if args.beam_events > 0:
            _say(f"Beam DirectRunner backfill, {args.beam_events:,} archived events")
            beam = measure_beam(url, events=args.beam_events, workers=args.workers)
            run.notes.append(
                f"{'beam':<16} {beam.rows_per_s:,.0f} rows/s ({beam.stored:,} of {beam.events:,})"
            )
        _tracing(args, run, url)
    return run


DOCS_MARKERS = ("<!-- bench:start -->", "<!-- bench:end -->")


def _docs_block(run: Run, table: list[Row], when: str) -> str:
    """The run as docs/benchmarks.md shows it: when, the settings, each run's line, the table."""
    details = "\n".join(["```", *render_settings(run), "", *render_runs(run), "```"])
    return f"`make bench` of {when}:\n\n{details}\n\n{render_table(table)}"


def _terminate(signum: int, _: object) -> NoReturn:
    raise SystemExit(128 + signum)  # unwinds through every cleanup, like Ctrl-C


def main(argv: Sequence[str] | None = None) -> int:
    args = _arguments(argv)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        run = _run(args)
    except KeyboardInterrupt:
        print("bench: interrupted; the scratch databases were dropped", file=sys.stderr)
        return 130
    table = rows(run)
    print(render_details(run))
    print(address_line())  # in this process: the free-text address and name detectors' share
    print()
    print(render_table(table))
    verdict = "PASS" if passed(table) else "FAIL"
    document = as_json(run, table)
    path = write_json(document, args.results)
    if args.write_docs:
        scaling.write_docs(_docs_block(run, table, document["when"]), markers=DOCS_MARKERS)
    print(f"\nbench: {verdict}; figures written to {path} and {path.parent / 'latest.json'}")
    return 0 if passed(table) else 1


if __name__ == "__main__":
    sys.exit(main())
