"""`python -m bench` (`make bench`): see bench/README.md."""

from __future__ import annotations

import argparse
import signal
import sys
import time
import uuid
from collections.abc import Sequence
from typing import Any, NoReturn

from app.config import BatchSettings, DatabaseSettings
from bench import cpu, database
from bench.anonymization import address_line
from bench.beam import BeamRun, measure_beam
from bench.consumer import ConsumerRun, broker_url, measure_consumer
from bench.copy_ceiling import measure_copy
from bench.load import LoadPlan, LoadRun, Tally
from bench.report import Result, cpu_figures, percentile, render, write_json
from bench.server import Service, running_service
from bench.tracing import Sample, TracingCost, measure, receiver_installed


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds first")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients")
    parser.add_argument(
        "--client-processes", type=int, default=1, help="processes the clients are spread over"
    )
    parser.add_argument("--batch", type=int, default=50, help="events per request")
    parser.add_argument("--workers", type=int, default=2, help="service worker processes")
    parser.add_argument("--min-ratio", type=float, default=0.3, help="events/s ÷ COPY rows/s")
    parser.add_argument("--copy-rows", type=int, default=200_000, help="rows for the ceiling")
    parser.add_argument("--copy-chunk", type=int, default=5_000, help="rows per COPY")
    parser.add_argument(
        "--consumer-messages",
        type=int,
        default=50_000,
        help="messages pre-filled for the RabbitMQ consumer's figure (0: skip it)",
    )
    parser.add_argument(
        "--consumers", type=int, default=0, help="consumer processes (0: as many as --workers)"
    )
    parser.add_argument(
        "--beam-events",
        type=int,
        default=0,
        help="archived events for the Beam DirectRunner backfill's figure (0: skip it)",
    )
    parser.add_argument(
        "--tracing-duration",
        type=float,
        default=8.0,
        help="measured seconds per tracing run: off, 100 %%, default sampling; twice (0: skip)",
    )
    return parser


def _server_knobs() -> str:
    batch, db = BatchSettings(), DatabaseSettings()
    return (
        f"batch max_size={batch.max_size} max_delay_ms={batch.max_delay_ms:g} "
        f"write_concurrency={batch.write_concurrency}, db pool_max_size={db.pool_max_size}"
    )


# The stages whose CPU time the service counts itself (thread time, per worker).
STAGE_COUNTERS = {
    "anonymize": "sluice_anonymize_seconds_total",
    "contract": "sluice_contract_check_seconds_total",
}


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


def _load(
    args: argparse.Namespace, service: Service
) -> tuple[Tally, dict[str, Any], dict[str, float]]:
    plan = LoadPlan(
        base_url=service.base_url,
        clients=args.clients,
        processes=min(args.client_processes, args.clients),
        batch=args.batch,
        warmup_s=args.warmup,
        duration_s=args.duration,
        run_tag=uuid.uuid4().hex[:8],
    )
    with LoadRun(plan) as run:
        timeline = run.start()
        time.sleep(max(0.0, timeline.warmup_end - time.monotonic()))
        before = cpu.sample(service.pid)
        stages_before = _stage_sample(service)
        time.sleep(max(0.0, timeline.end - time.monotonic()))
        after = cpu.sample(service.pid)
        stages_after = _stage_sample(service)
        tally = run.collect()
    use = cpu.usage(before, after, args.duration)
    stages = _stage_seconds(stages_before, stages_after)
    return tally, cpu_figures(use, tally.cpu_s, args.duration), stages


def _run(args: argparse.Namespace) -> Result:
    admin, where = database.admin_url()
    print(f"bench: PostgreSQL ({where}); creating a scratch database", flush=True)
    with database.scratch_database(admin) as url:
        database.checkpoint(admin)
        print(f"bench: COPY ceiling, {args.copy_rows:,} rows", flush=True)
        copied = measure_copy(url, rows=args.copy_rows, chunk=args.copy_chunk)
        database.checkpoint(admin)
        print(f"bench: starting the service ({args.workers} workers)", flush=True)
        with running_service(url, workers=args.workers) as service:
            print(
                f"bench: {args.clients} clients, {args.warmup:g} s warm-up + "
                f"{args.duration:g} s measured",
                flush=True,
            )
            tally, cpu_pct, stage_s = _load(args, service)
            if tally.errors:
                print(f"bench: service log (tail):\n{service.log_tail()}", file=sys.stderr)
        db_events = database.count_events(url)
        consumer = _consume(args, url)
        beam = _backfill(args, url)
        tracing_cost = _tracing(args, url)
    latencies = tally.latencies_s
    return Result(
        events_per_s=tally.window_events / args.duration,
        requests_per_s=len(latencies) / args.duration,
        p50_ms=1000 * percentile(latencies, 0.50),
        p90_ms=1000 * percentile(latencies, 0.90),
        p99_ms=1000 * percentile(latencies, 0.99),
        max_ms=1000 * max(latencies, default=float("nan")),
        copy_rows_per_s=copied.rows_per_s,
        min_ratio=args.min_ratio,
        acked_events=tally.stored_events,
        db_events=db_events,
        errors=dict(tally.errors),
        setup={
            "clients": args.clients,
            "client_processes": min(args.client_processes, args.clients),
            "batch": args.batch,
            "workers": args.workers,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "copy_rows": args.copy_rows,
            "server": _server_knobs(),
            "database": where,
        },
        cpu_pct=cpu_pct,
        anonymize_s=stage_s.get("anonymize"),
        contract_s=stage_s.get("contract"),
        consumer_processes=consumer.processes if consumer else 0,
        consumer_messages=consumer.messages if consumer else 0,
        consumer_stored=consumer.stored if consumer else 0,
        consumer_events_per_s=consumer.events_per_s if consumer else None,
        beam_events=beam.events if beam else 0,
        beam_stored=beam.stored if beam else 0,
        beam_workers=beam.workers if beam else 0,
        beam_rows_per_s=beam.rows_per_s if beam else None,
        tracing_events_per_s=tracing_cost.events_per_s if tracing_cost else None,
    )


def _backfill(args: argparse.Namespace, url: str) -> BeamRun | None:
    if args.beam_events <= 0:
        return None
    print(f"bench: Beam DirectRunner backfill, {args.beam_events:,} archived events", flush=True)
    return measure_beam(url, events=args.beam_events, workers=args.workers)


def _consume(args: argparse.Namespace, url: str) -> ConsumerRun | None:
    if args.consumer_messages <= 0:
        return None
    broker = broker_url()
    if broker is None:
        print("bench: RabbitMQ unreachable; no consumer figure", flush=True)
        return None
    processes = args.consumers or args.workers
    print(
        f"bench: {processes} consumers, {args.consumer_messages:,} messages pre-filled", flush=True
    )
    return measure_consumer(
        broker,
        url,
        messages=args.consumer_messages,
        processes=processes,
        run_tag=uuid.uuid4().hex[:8],
    )


def _tracing(args: argparse.Namespace, url: str) -> TracingCost | None:
    if args.tracing_duration <= 0:
        return None
    short = argparse.Namespace(**{**vars(args), "duration": args.tracing_duration})

    def run(extra_env: dict[str, str]) -> Sample:
        with running_service(url, workers=args.workers, extra_env=extra_env) as service:
            tally, cpu_pct, _ = _load(short, service)
        service_s = cpu_pct["service"] / 100 * short.duration if "service" in cpu_pct else None
        per_event = (
            1e6 * service_s / tally.window_events if service_s and tally.window_events else None
        )
        return Sample(tally.window_events / short.duration, per_event)

    if not receiver_installed():
        print("bench: no OTLP receiver (make tools-observability); no tracing figure")
        return None
    print(
        f"bench: tracing off, 100 %, default, twice, {args.tracing_duration:g} s each", flush=True
    )
    return measure(run)


def _terminate(signum: int, _: object) -> NoReturn:
    raise SystemExit(128 + signum)  # unwinds through every cleanup, like Ctrl-C


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        result = _run(args)
    except KeyboardInterrupt:
        print("bench: interrupted; the scratch database was dropped", file=sys.stderr)
        return 130
    print(render(result))
    print(address_line())  # in this process: the free-text address and name detectors' share
    path, line = write_json(result)
    print(f"bench: figures written to {path}")
    print(line)
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
